"""`appliance-installer`: install the appliance on an offline Debian 12 host from a signed bundle."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from installer.ansible_runner import HIDDEN_COMMAND, run_hidden_playbook
from installer.backup import describe, list_backups, read_backup, run_restore, take_backup
from installer.config import load_install_config
from installer.errors import InstallError
from installer.install import InstallOptions, install
from installer.journal import Journal
from installer.paths import HostPaths
from installer.plan import Plan
from installer.preflight import CHECK_NAMES, HostProbe, run_preflight
from installer.status import status_report
from installer.ui import is_json_logging, log, make_ui
from installer.uninstall import uninstall
from operator_errors.cli import Group, debug_option
from operator_errors.logs import configure_logging

console = Console(stderr=True, highlight=False, soft_wrap=True)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise InstallError("appliance-installer must run as root.", "Run it with sudo, or as root.")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@debug_option
def cli() -> None:
    """Install the appliance on an offline Debian 12 host from one signed bundle."""


def _bundle_options(func: Any) -> Any:
    func = click.option("--downgrade-authorization", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                        default=None, help="Signed permission (appliance-bundle authorize-downgrade) to install a "
                        "version older than the installed one; recorded in the receipt.")(func)
    func = click.option("--accept-expired", metavar="REASON", default=None,
                        help="Accept an expired bundle because this host's clock is wrong; recorded.")(func)
    func = click.option("--ignore-preflight", "ignored", multiple=True, type=click.Choice(CHECK_NAMES),
                        help="Override one blocking preflight check (repeatable); recorded in the receipt.")(func)
    func = click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                        help="Install settings (TOML): hostname, https_port, http_port, extra_dns, extra_ips, "
                             "pki_passphrase_file, signature_threshold.")(func)
    func = click.option("--keyring", type=click.Path(path_type=Path, dir_okay=False), default=None,
                        help="Release public keys; needed on first install, then pinned in /etc/appliance.")(func)
    return click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))(func)


@cli.command("install")
@_bundle_options
def install_command(bundle: Path, keyring: Path | None, config_file: Path | None, ignored: tuple[str, ...],
                    accept_expired: str | None, downgrade_authorization: Path | None) -> None:
    """Verify BUNDLE, check the host, install every service, and print how to log in."""
    _require_root()
    options = InstallOptions(bundle, load_install_config(config_file), keyring, frozenset(ignored), accept_expired,
                             downgrade_authorization)
    summary = install(options, HostPaths(), HostProbe(), make_ui(console))
    click.echo("")
    click.echo(f"Appliance {summary.version} is installed ({summary.seconds:.0f}s; changed={summary.changed}).")
    click.echo(f"  URL:             {summary.access_url}")
    click.echo(f"  CA fingerprint:  {summary.fingerprint}  (SHA-256 of the root; compare it out of band)")
    click.echo("  CA bundle:       /var/lib/appliance/pki/ca-bundle.pem  (also at /api/v2/pki/ca.pem)")
    if summary.setup_link:
        click.echo(f"  First user:      open this one-time link (valid 24h): {summary.setup_link}")
    else:
        click.echo("  First user:      already created; log in at the URL")
    click.echo(f"  Log:             {summary.log}")
    click.echo("Next steps: give clients the CA bundle; keep the release keys offline; take the CA root key offline "
               "with: /opt/appliance/current/venv/bin/appliance pki export-root FILE --remove")


@cli.command()
@_bundle_options
def preflight(bundle: Path, keyring: Path | None, config_file: Path | None, ignored: tuple[str, ...],
              accept_expired: str | None, downgrade_authorization: Path | None) -> None:
    """Verify BUNDLE and check this host without changing anything; exit 1 if a check blocks."""
    from bundles.verify import open_bundle
    from installer.install import verify

    options = InstallOptions(bundle, load_install_config(config_file), keyring, frozenset(ignored), accept_expired,
                             downgrade_authorization)
    ui = make_ui(console)
    with open_bundle(bundle) as handle:
        result, _ = verify(handle, options, HostPaths(), ui)
    checks = run_preflight(result.manifest, options.config, HostPaths(), HostProbe(), options.ignored_checks)
    ui.checks(checks)
    if any(c.is_blocking for c in checks):
        sys.exit(1)


@cli.command("upgrade")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--plan", "plan_only", is_flag=True, help="Show what the upgrade would do, and change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation after showing the plan.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Install settings (TOML); default: the settings this host was installed with.")
@click.option("--accept-expired", metavar="REASON", default=None,
              help="Accept an expired bundle because this host's clock is wrong; recorded.")
@click.option("--expect-manifest", metavar="SHA256", default=None,
              help="Refuse the bundle unless its manifest has this digest (what an owner approved in the console).")
@click.option("--actor", default=None, help="Who asked for the upgrade, as recorded; default: the sudo user or root.")
@click.option("--downgrade-authorization", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A signed authorization (appliance-bundle authorize-downgrade) to install this older release.")
def upgrade_command(bundle: Path, plan_only: bool, yes: bool, output: str, config_file: Path | None,
                    accept_expired: str | None, expect_manifest: str | None, actor: str | None,
                    downgrade_authorization: Path | None) -> None:
    """Verify BUNDLE, show the plan, then upgrade with a backup; any failure rolls back to the running release."""
    from installer.upgrade import UpgradeOptions, upgrade

    _require_root()

    def confirm(plan: Plan) -> bool:
        if output == "text":
            click.echo("\n".join(plan.lines()))
        return yes or click.confirm("Upgrade now? The appliance is in maintenance mode meanwhile", err=True)

    options = UpgradeOptions(bundle, config_file, accept_expired, actor=actor or os.environ.get("SUDO_USER", "root"),
                             expect_manifest=expect_manifest, downgrade_authorization=downgrade_authorization)
    plan, journal = upgrade(options, HostPaths(), make_ui(console), plan_only=plan_only, confirm=confirm)
    if output == "json":
        click.echo(json.dumps({"plan": plan.to_json(), "journal": journal.to_json() if journal else None}, indent=2))
    elif plan_only:
        click.echo("\n".join(plan.lines()))
    elif journal is not None:
        downtime = journal.data.get("downtime_seconds")
        click.echo(f"Appliance {journal.to_version} is installed (was {journal.from_version}; "
                   f"downtime {downtime} s). Undo with: appliance-installer rollback")


@cli.command("rollback")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def rollback_command(yes: bool) -> None:
    """Back to the release before the last upgrade, with the backup taken before it (or finish an interrupted one)."""
    from installer.upgrade import rollback

    _require_root()

    def confirm(journal: Journal) -> bool:
        click.echo(f"Roll back {journal.to_version} -> {journal.from_version}, restoring the backup "
                   f"{journal.data.get('backup')} taken before the upgrade ({journal.started_at}): anything written "
                   "since is lost.")
        return yes or click.confirm("Roll back now?", err=True)

    journal = rollback(HostPaths(), make_ui(console), confirm=confirm, actor=os.environ.get("SUDO_USER", "root"))
    click.echo(f"Appliance {journal.from_version} runs again ({journal.kind} {journal.outcome}).")


@cli.command()
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(output: str) -> None:
    """Show the installed version, each service's state, certificate expiry and the last verification.

    As root, an upgrade a killed run left unfinished is rolled back first.
    """
    if os.geteuid() == 0:
        from installer.upgrade import recover_locked

        recover_locked(HostPaths(), make_ui(console))
    report = status_report(HostPaths())
    if output == "json":
        click.echo(json.dumps(report, indent=2))
        return
    if report["installed_version"] is None:
        click.echo("No appliance is installed.")
        return
    click.echo(f"Installed: appliance {report['installed_version']} ({report['release_dir']})")
    for unit, state in report["units"].items():
        click.echo(f"  {unit:<32} {state}")
    for cert in (report["certificates"] or {}).get("certificates", []):
        if cert["status"] != "superseded":
            click.echo(f"  certificate {cert['name']:<20} {cert['state']}, expires {cert['not_after'][:10]}")
    receipt = report["last_verification"]
    if receipt:
        signers = ", ".join(s["user_id"] for s in receipt["signers"])
        click.echo(f"  last verified {receipt['verified_at']}: {receipt['version']} signed by {signers}")
        for name in receipt.get("preflight_overrides", []):
            click.echo(f"  preflight check overridden at install: {name}")
    last = report["last_upgrade"]
    if last:
        failed = f", failed at {last['failed_step']}" if last["failed_step"] else ""
        click.echo(f"  last {last['kind']} {last['from_version']} -> {last['to_version']}: {last['outcome']}{failed} "
                   f"({last['finished_at'] or 'unfinished'})")
    if any(state != "active" for state in report["units"].values()):
        sys.exit(1)


@cli.command("uninstall")
@click.option("--purge", is_flag=True, help="Also delete /var/lib/appliance, /etc/appliance and the database.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall_command(purge: bool, yes: bool) -> None:
    """Stop and remove the appliance; its data stays unless --purge."""
    _require_root()
    if not yes:
        what = "everything, including all data" if purge else "the services (data is kept)"
        click.confirm(f"Remove {what}?", abort=True, err=True)
    for line in uninstall(HostPaths(), purge=purge):
        click.echo(line)


@cli.command("backup")
@click.option("--keep", default=7, show_default=True, type=click.IntRange(min=1),
              help="Keep this many backups, the newest; older ones are deleted.")
@click.option("--reason", default="manual", show_default=True, help="Why, as the manifest records it.")
def backup_command(keep: int, reason: str) -> None:
    """Back up the database, /etc/appliance, the CA, registry and mirror metadata and receipts."""
    _require_root()
    backup = take_backup(HostPaths(), reason=reason, keep=keep)
    kept = list_backups(HostPaths())
    if is_json_logging():  # the daily timer's run: one event in the journal
        configure_logging("json")
        log.info("backup_written", extra={"path": str(backup.path), "version": backup.version, "reason": reason,
                                          "bytes": backup.size, "kept": len(kept)})
        return
    for line in describe(backup):
        click.echo(line)
    click.echo(f"{len(kept)} backup(s) kept in {HostPaths().backups}, {sum(b.size for b in kept) / 1e6:.1f} MB.")


@cli.command("restore")
@click.argument("backup", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def restore_command(backup: Path, yes: bool) -> None:
    """Put BACKUP's database, /etc/appliance and CA back, under maintenance mode; recorded as a release."""
    _require_root()
    found = read_backup(backup)
    for line in describe(found):
        click.echo(line)
    if not yes:
        click.confirm("Replace the appliance's database, configuration and CA with this backup's? "
                      "Changes since it was taken are lost.", abort=True, err=True)
    paths = HostPaths()
    restored = run_restore(paths, backup, actor=_actor())
    click.echo(f"Restored the backup of {restored.created_at:%Y-%m-%d %H:%M} UTC (release {restored.version}, "
               f"schema {restored.schema_version:06d}); maintenance is off.")
    if restored.version != paths.installed_version():
        click.echo(f"It was taken on release {restored.version}: run the install command with this release's "
                   "bundle again, so the restored configuration gets this release's settings.")


@cli.command("support-bundle")
@click.option("--output-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the zip [default: ./support-bundle-host-<time>.zip].")
@click.option("--journal-mb", default=4, show_default=True, type=click.IntRange(min=1),
              help="The newest MB of each unit's journal to include.")
@click.option("--yes", is_flag=True, help="Write without asking after showing what was collected.")
def support_bundle_command(output_file: Path | None, journal_mb: int, yes: bool) -> None:
    """Collect a redacted support bundle of this host (works with the console stopped)."""
    from bundles.support import default_name, require_terminal_or_yes, write_confirmed
    from installer.support_bundle import collect

    _require_root()
    require_terminal_or_yes(yes)
    bundle = collect(HostPaths(), journal_mb)
    write_confirmed(bundle, output_file or Path(default_name("host")), yes=yes)


@cli.command("logs")
@click.argument("unit", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines as they come (Ctrl-C stops).")
@click.option("--lines", "-n", default=100, show_default=True, type=click.IntRange(min=0),
              help="How many of the newest lines to show first.")
@click.option("--since", default=None, metavar="TIME",
              help="Only lines since TIME, as journalctl reads it: '2026-01-02 10:00', '1 hour ago', 'today'.")
def logs_command(unit: str | None, follow: bool, lines: int, since: str | None) -> None:
    """Show the appliance's logs: UNIT (e.g. console, relay, provisioner), or all units interleaved."""
    from installer.logs import journal_lines, resolve_units

    units = resolve_units(unit)
    try:
        for line in journal_lines(units, follow=follow, lines=lines, since=since):
            click.echo(line)
    except KeyboardInterrupt:
        sys.exit(130)


def _actor() -> str:
    """Who ran the command: the sudo user behind root when there is one."""
    return f"{os.environ.get('SUDO_USER') or getpass.getuser()} (installer)"


@cli.command("apply-request")
@click.option("--spool", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The console's upgrade request folder (default /var/lib/appliance/upgrade-requests).")
def apply_request_command(spool: Path | None) -> None:
    """Run the upgrade an owner applied in the console (appliance-upgrade.service runs this as root)."""
    from installer.console_request import apply_request

    _require_root()
    sys.exit(apply_request(spool or HostPaths().upgrade_requests))


def main() -> None:
    """Entry point: the hidden subcommand runs Ansible; anything else is the CLI."""
    if len(sys.argv) > 1 and sys.argv[1] == HIDDEN_COMMAND:
        run_hidden_playbook(sys.argv[2:])
        return
    cli(prog_name="appliance-installer")
