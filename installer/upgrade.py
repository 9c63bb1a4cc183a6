"""`appliance-installer upgrade` and `rollback`: a journal of steps, each with do and undo.

verify -> floor -> plan change nothing and run before the journal starts. Then, journaled:
maintenance -> backup -> stage -> migrate -> switch -> converge -> restart -> health -> leave ->
record. A failure after the backup undoes every step that began, last first, and ends on the old
release, healthy; a run killed anywhere leaves an unfinished journal that the next `upgrade`,
`rollback` or `status` rolls back the same way (docs/adr/0035-upgrade-journal.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from bundles.layout import SBOM
from bundles.manifest import parse_version
from bundles.verify import TrustPolicy, VerifiedBundle, open_bundle
from installer.appliance_cli import run_appliance
from installer.config import InstallConfig, load_install_config
from installer.errors import InstallError
from installer.health import https_get
from installer.install import (
    InstallOptions,
    _bundle_step,
    _write_private,
    check_health,
    converge,
    ensure_secrets,
    playbook_vars,
    switch_current,
    unpack_release,
    verify,
)
from installer.journal import Journal, StepRecord, Timer, installer_lock, now_iso, save, unfinished
from installer.keys import pin_rotated_keys
from installer.paths import HostPaths
from installer.plan import RESTARTED_UNITS, Plan, check_disk, check_schema, make_plan
from installer.ui import Ui

# Test hook (documented in the ADR): the installer SIGKILLs itself once the named step's work is
# done and before the journal records it, the worst moment for a crash.
KILL_AT = "APPLIANCE_INSTALLER_KILL_AT"
# Units that are not active this long after a restart fail the gate: the release they run is the one just
# started, and a console that cannot import its code never becomes active however long one waits.
HEALTH_SETTLE = 30.0
STEPS = ("verify", "floor", "plan", "maintenance", "backup", "stage", "migrate", "switch", "converge", "restart",
         "health", "leave", "record")


@dataclass(frozen=True)
class UpgradeOptions:
    bundle: Path
    config_file: Path | None = None
    accept_expired: str | None = None
    actor: str = "root"
    expect_manifest: str | None = None   # the console's apply request: the manifest digest the owner saw
    downgrade_authorization: Path | None = None  # signed permission to go below the installed version


@dataclass
class Run:
    """One upgrade's (or rollback's) state: the journal plus what only this process holds."""
    journal: Journal
    paths: HostPaths
    ui: Ui
    bundle: BinaryIO | None = None
    result: VerifiedBundle | None = None
    policy: TrustPolicy | None = None
    downtime_started: float | None = None

    @property
    def old(self) -> Path:
        return self.paths.release(str(self.journal.from_version))

    @property
    def new(self) -> Path:
        return self.paths.release(self.journal.to_version)

    @property
    def config(self) -> InstallConfig:
        return InstallConfig(**{**self.journal.data["config"], "source": None,
                                "pki_passphrase_file": _optional_path(self.journal.data["config"])})


def _optional_path(config: dict[str, object]) -> Path | None:
    value = config.get("pki_passphrase_file")
    return Path(str(value)) if value else None


def lacks_command(result: subprocess.CompletedProcess[str]) -> bool:
    """The release predates this command (click's usage error), as opposed to the command failing."""
    return result.returncode == 2 and "No such command" in result.stderr


# -- the config an upgrade converges with ---------------------------------------------------------


def installed_config(paths: HostPaths, given: Path | None) -> InstallConfig:
    """--config if given, else the settings the host was installed with (read back from the playbook vars)."""
    if given is not None:
        return load_install_config(given)
    vars_file = paths.installer_state / "vars.json"
    if not vars_file.exists():
        raise InstallError("no appliance is installed here (no playbook variables from an install).",
                           "Install first: appliance-installer install BUNDLE --keyring FILE.", step="Verify bundle")
    saved = json.loads(vars_file.read_text())
    default_pki = str(paths.secrets / "pki-passphrase")
    return InstallConfig(hostname=saved["appliance_hostname"], https_port=saved["appliance_https_port"],
                         http_port=saved["appliance_http_port"], extra_dns=tuple(saved["appliance_extra_dns"]),
                         extra_ips=tuple(saved["appliance_extra_ips"]),
                         pki_passphrase_file=None if saved["appliance_pki_passphrase_file"] == default_pki
                         else Path(saved["appliance_pki_passphrase_file"]),
                         signature_threshold=int(saved.get("appliance_signature_threshold", 1)))


def _config_json(config: InstallConfig) -> dict[str, object]:
    data = asdict(config)
    data.pop("source")
    data["pki_passphrase_file"] = str(config.pki_passphrase_file) if config.pki_passphrase_file else None
    return data


# -- the version floor ------------------------------------------------------------------------------


def version_floor(paths: HostPaths) -> str | None:
    """The anti-rollback floor: the highest of the installed version, the receipts on disk and PostgreSQL's."""
    candidates = [v for v in (paths.installed_version(), _receipts_floor(paths), _database_floor(paths)) if v]
    return max(candidates, key=lambda v: parse_version(v, "floor")) if candidates else None


def _receipts_floor(paths: HostPaths) -> str | None:
    versions = []
    for receipt in paths.receipts.glob("*.json"):
        data = json.loads(receipt.read_text())
        if _installed_by(data):
            versions.append(str(data.get("to_version") or data["version"]))
    return max(versions, key=lambda v: parse_version(v, "receipt")) if versions else None


def _installed_by(receipt: dict[str, object]) -> bool:
    """The receipt is of an install or upgrade that succeeded (install receipts name neither kind nor outcome)."""
    return receipt.get("outcome", "succeeded") == "succeeded" and receipt.get("kind") in (None, "install", "upgrade")


def _database_floor(paths: HostPaths) -> str | None:
    if not (paths.current / "venv/bin/appliance").exists():
        return None
    result = run_appliance(paths, "releases", "floor", timeout=60)
    if lacks_command(result):
        return None   # a release from before the history in PostgreSQL: the disk floor stands alone
    if result.returncode != 0:
        raise InstallError(f"could not read the version floor from PostgreSQL: {result.stderr.strip()[-300:]}",
                           "Check that PostgreSQL runs (systemctl status postgresql@15-main), then retry.",
                           step="Version floor")
    return result.stdout.strip() or None


def downgrade_authorized(result: VerifiedBundle) -> bool:
    """Verification accepted a signed authorization for exactly installed -> this version (bundles/downgrade.py)."""
    return result.downgrade is not None


def check_expected(result: VerifiedBundle, expected: str | None) -> None:
    if expected is not None and expected != result.manifest_sha256:
        raise InstallError(f"the bundle's manifest is {result.manifest_sha256}, not the {expected} that was "
                           "approved; nothing was changed.", "Upload the bundle again and approve what it shows.",
                           step="Verify bundle")


def check_floor(result: VerifiedBundle, paths: HostPaths) -> None:
    floor = version_floor(paths)
    version = result.manifest.version
    if floor and parse_version(version, "version") < parse_version(floor, "floor") \
            and not downgrade_authorized(result):
        raise InstallError(f"version {version} is older than {floor}, the newest this host has run; nothing was "
                           "changed.", "Upgrade to a newer bundle. A downgrade needs a signed downgrade "
                           "authorization naming both versions.", step="Version floor")
    if version == paths.installed_version():
        raise InstallError(f"{version} is already installed; nothing was changed.",
                           "To re-converge the same version run: appliance-installer install BUNDLE.",
                           step="Version floor")


# -- the steps ------------------------------------------------------------------------------------


def do_maintenance(run: Run) -> None:
    _optional_cli(run, "maintenance", "enter", "--reason", f"upgrade to {run.journal.to_version}")


def undo_maintenance(run: Run) -> None:
    """Last of every rollback: prove the old release healthy, then let writes in again."""
    _prove_healthy(run, run.paths.installed_version() or str(run.journal.from_version))
    _optional_cli(run, "maintenance", "leave")


def do_backup(run: Run) -> None:
    from installer.backup import take_backup

    backup = take_backup(run.paths, reason=f"before upgrade to {run.journal.to_version}")
    run.journal.data["backup"] = str(backup.path)
    run.ui.info(f"    backup {backup.path} ({backup.size / 1e6:.1f} MB, schema {backup.schema_version})")


def do_stage(run: Run) -> None:
    assert run.bundle is not None and run.result is not None and run.policy is not None
    release = unpack_release(run.bundle, run.result, run.policy, run.paths, run.ui)
    build_venv(release, run.journal.to_version, run.paths)


def build_venv(release: Path, version: str, paths: HostPaths) -> None:
    """What the console role does, done before the switch: python3 -m venv, then pip from the release's wheels."""
    venv = release / "venv"
    if (venv / "bin/appliance").exists():
        return
    shutil.rmtree(venv, ignore_errors=True)
    _checked(["python3", "-m", "venv", str(venv)], "Stage", paths)
    _checked([str(venv / "bin/pip"), "install", "--quiet", "--no-index", "--find-links", str(release / "wheels"),
              f"appliance=={version}"], "Stage", paths)


def undo_stage(run: Run) -> None:
    if run.new.exists() and run.paths.current.resolve() != run.new.resolve():
        shutil.rmtree(run.new)


def do_migrate(run: Run) -> None:
    result = run_appliance(run.paths, "migrate", release=run.new)
    _log(run.paths, "migrate", result)
    if result.returncode != 0:
        raise InstallError(f"the migration failed: {result.stderr.strip()[-500:]}",
                           f"The full output is in {run.paths.log}.", step="Migrate")


def undo_migrate(run: Run) -> None:
    """The database and config as the backup holds them (restore_backup stops and starts the units)."""
    from installer.backup import restore_backup

    backup = run.journal.data.get("backup")
    if backup is None:
        return
    restore_backup(run.paths, Path(backup))


def do_switch(run: Run) -> None:
    switch_current(run.paths, run.new)


def undo_switch(run: Run) -> None:
    """Back to the old release; its playbooks if the new ones ran and differ; restart on the old code."""
    switch_current(run.paths, run.old)
    if run.journal.step("converge").touched and _playbooks_differ(run.old, run.new):
        _converge(run, run.old, str(run.journal.from_version))
    _restart(run)


def do_converge(run: Run) -> None:
    _converge(run, run.new, run.journal.to_version)


def do_restart(run: Run) -> None:
    run.downtime_started = time.monotonic()
    _restart(run)


def do_health(run: Run) -> None:
    _prove_healthy(run, run.journal.to_version)
    if run.downtime_started is not None:
        run.journal.data["downtime_seconds"] = round(time.monotonic() - run.downtime_started, 1)


def do_leave(run: Run) -> None:
    _optional_cli(run, "maintenance", "leave")


def do_record(run: Run) -> None:
    pass   # the receipt is written by finish(), for every outcome


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    do: Callable[[Run], None]
    undo: Callable[[Run], None] | None = None


JOURNALED = (
    Step("maintenance", "Enter maintenance mode", do_maintenance, undo_maintenance),
    Step("backup", "Back up the database and config", do_backup),
    Step("stage", "Stage the new release beside the old", do_stage, undo_stage),
    Step("migrate", "Migrate the database", do_migrate, undo_migrate),
    Step("switch", "Switch /opt/appliance/current", do_switch, undo_switch),
    Step("converge", "Converge the playbooks", do_converge),
    Step("restart", "Restart the appliance's services", do_restart),
    Step("health", "Health gates", do_health),
    Step("leave", "Leave maintenance mode", do_leave),
    Step("record", "Record the receipt", do_record),
)
UNDO = {step.name: step.undo for step in JOURNALED}


# -- helpers the steps share ------------------------------------------------------------------------


def _optional_cli(run: Run, *args: str) -> None:
    """A control-plane command the running release may predate (then noted, not failed)."""
    result = run_appliance(run.paths, *args)
    _log(run.paths, " ".join(args[:2]), result)
    if lacks_command(result):
        run.ui.info(f"    this release has no `appliance {' '.join(args[:2])}`; skipped")
        return
    if result.returncode != 0:
        raise InstallError(f"`appliance {' '.join(args[:2])}` failed: {result.stderr.strip()[-300:]}",
                           f"See {run.paths.log}.", step=args[0].title())


def _converge(run: Run, release: Path, version: str) -> None:
    secret_files = ensure_secrets(run.config, run.paths)
    converge(release, playbook_vars(version, run.config, release, secret_files, run.paths), run.paths, run.ui)


def _restart(run: Run) -> None:
    _checked(["systemctl", "daemon-reload"], "Restart", run.paths)
    _checked(["systemctl", "restart", *RESTARTED_UNITS], "Restart", run.paths)


def _prove_healthy(run: Run, version: str) -> None:
    """Units active, /healthz over HTTPS, the API reports `version` and reaches the database."""
    check_health(run.config, run.paths, settle=HEALTH_SETTLE)
    port, ca = run.config.https_port, run.paths.ca_bundle
    status, body = https_get(port, ca, "/api/v2/buildinfo")
    if status != 200 or json.loads(body).get("version") != version:
        raise InstallError(f"the API answers {status} {body[:200]} where version {version} was expected.",
                           "Read: journalctl -u appliance-console -n 50", step="Health checks")
    status, body = https_get(port, ca, "/api/v2/users/me", {"Authorization": "Bearer not-a-session"})
    if status != 401:  # a session lookup in PostgreSQL answered
        raise InstallError(f"the API's session check answers {status} {body[:200]}, not 401.",
                           "Read: journalctl -u appliance-console -u postgresql@15-main -n 50",
                           step="Health checks")


def _playbooks_differ(old: Path, new: Path) -> bool:
    def listing(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in (root / "playbooks").rglob("*") if p.is_file()}
    return not new.exists() or listing(old) != listing(new)


def _checked(argv: list[str], step: str, paths: HostPaths) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    _log(paths, argv[0], result)
    if result.returncode != 0:
        raise InstallError(f"{' '.join(argv[:3])} failed: {result.stderr.strip()[-500:]}",
                           f"The full output is in {paths.log}.", step=step)


def _log(paths: HostPaths, what: str, result: subprocess.CompletedProcess[str]) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    with paths.log.open("a") as log:
        log.write(f"\n===== {now_iso()} {what}: exit {result.returncode}\n{result.stdout}{result.stderr}")


# -- running the journal ----------------------------------------------------------------------------


def run_steps(run: Run) -> None:
    """Do each pending step, journaling it started before and done after; on failure roll back and raise."""
    for step in JOURNALED:
        record = run.journal.step(step.name)
        if record.state == "done":
            continue
        try:
            with run.ui.step(step.title):
                _do(run, step, record)
        except Exception as err:
            record.state, record.error = "failed", str(err)
            run.journal.failed_step = record.name
            _log_text(run.paths, f"step {record.name} failed:\n{traceback.format_exc()}")
            _roll_back_after(run, err)
            raise _rolled_back_error(run, record, err) from err


def _do(run: Run, step: Step, record: StepRecord) -> None:
    record.state = "started"
    save(run.journal, run.paths)
    timer = Timer()
    step.do(run)
    if os.environ.get(KILL_AT) == step.name:
        os.kill(os.getpid(), signal.SIGKILL)
    record.state, record.seconds = "done", timer.seconds
    save(run.journal, run.paths)


def _roll_back_after(run: Run, cause: Exception) -> None:
    try:
        roll_back(run)
    except Exception as err:
        _log_text(run.paths, f"rollback failed:\n{traceback.format_exc()}")
        raise InstallError(f"{cause}; then rolling back failed too: {err}",
                           f"The journal {run.paths.journal} is unfinished: fix what the second error names, then "
                           "run `appliance-installer status` to finish the rollback. Log: " + str(run.paths.log),
                           step=f"Upgrade (step {run.journal.failed_step})") from err


def roll_back(run: Run) -> None:
    """Undo every step that began, last first, each recorded undone; then finish the journal.

    Resumable: a step already undone is skipped, so a rollback killed midway continues where it was.
    """
    run.journal.outcome = "rolling-back"
    save(run.journal, run.paths)
    for record in run.journal.to_undo():
        undo = UNDO.get(record.name)
        with run.ui.step(f"Undo {record.name}"):
            timer = Timer()
            if undo is not None:
                undo(run)
            record.state, record.undo_seconds = "undone", timer.seconds
            save(run.journal, run.paths)
    finish(run, "succeeded" if run.journal.kind == "rollback" else "rolled-back")


def _rolled_back_error(run: Run, record: StepRecord, err: Exception) -> InstallError:
    hint = getattr(err, "hint", "") or ""
    return InstallError(f"{err}; every change was undone and {run.journal.from_version} runs again, healthy.",
                        f"{hint} The full log is {run.paths.log}; the journal is {run.paths.journal}. Fix the cause "
                        "and run the same upgrade command again.".strip(), step=f"Upgrade (step {record.name})")


def _log_text(paths: HostPaths, text: str) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    with paths.log.open("a") as log:
        log.write(f"\n===== {now_iso()} {text}\n")


def finish(run: Run, outcome: str) -> None:
    """Close the journal, write the receipt file and record it in PostgreSQL (when the release can)."""
    journal = run.journal
    journal.outcome, journal.finished_at = outcome, now_iso()  # type: ignore[assignment]
    save(journal, run.paths)
    record = receipt(journal, run.paths)
    body = json.dumps(record, indent=1).encode()
    run.paths.receipts.mkdir(parents=True, exist_ok=True)
    _write_private(run.paths.receipts / f"{journal.kind}-{record['to_version']}-{int(time.time())}.json", body, 0o644)
    if outcome == "succeeded" and journal.kind == "upgrade":   # latest.json: the running release's verification
        _write_private(run.paths.receipts / "latest.json", body, 0o644)
    elif outcome == "succeeded":
        _restore_latest(run.paths, str(journal.from_version))
    # The restore a rollback ran took the database back to before the upgrade it undoes, and with it that
    # upgrade's record: recorded again (idempotent), then the rollback's own.
    for each in [*journal.data.get("rerecord", []), release_record(journal, run.paths)]:
        _record(run, each)


def _record(run: Run, record: dict[str, object]) -> None:
    spool = run.paths.installer_state / "release-record.json"
    _write_private(spool, json.dumps(record).encode())
    try:
        _optional_cli(run, "releases", "record", "--file", str(spool))
    except InstallError as err:
        run.ui.info(f"    the receipt is on disk ({run.paths.receipts}) but not in PostgreSQL: {err}")


def _restore_latest(paths: HostPaths, version: str) -> None:
    """After a rollback latest.json is again the receipt that installed `version` (its verification)."""
    for candidate in sorted(paths.receipts.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        data = json.loads(candidate.read_text())
        if candidate.name != "latest.json" and data.get("version") == version and _installed_by(data):
            _write_private(paths.receipts / "latest.json", candidate.read_bytes(), 0o644)
            return


def release_record(journal: Journal, paths: HostPaths) -> dict[str, object]:
    """The ReleaseRecord (appliance/sdk/releases.py) that `appliance releases record` stores."""
    data = journal.data
    # A rollback journal is the upgrade's, undone: it went from the upgrade's target back to its start.
    start, end = (journal.to_version, journal.from_version) if journal.kind == "rollback" \
        else (journal.from_version, journal.to_version)
    # A downgrade runs as an upgrade (same steps, same rollback) and is recorded as what it was.
    kind = "downgrade" if journal.kind == "upgrade" and data.get("downgrade_authorization") else journal.kind
    return {"kind": kind, "from_version": start, "to_version": end,
            "manifest_sha256": data.get("manifest_sha256"),
            "signers": [{"fingerprint": s["fingerprint"], "user_id": s["user_id"]} for s in data.get("signers", [])],
            "plan": data.get("plan"),
            "steps": [{"name": s.name, "seconds": s.seconds + s.undo_seconds, "outcome": _step_outcome(s)}
                      for s in journal.steps],
            "outcome": journal.outcome, "failed_step": journal.failed_step, "actor": data.get("actor", "root"),
            "started_at": journal.started_at, "finished_at": journal.finished_at,
            "sbom": _sbom(paths.release(str(end))), "log": str(paths.log)}


def _sbom(release: Path) -> object:
    sbom = release / SBOM
    return json.loads(sbom.read_text()) if sbom.exists() else None


def receipt(journal: Journal, paths: HostPaths) -> dict[str, object]:
    """The receipt file: the release record plus what install receipts hold and the measured downtime."""
    record = release_record(journal, paths)
    return {**record, "version": record["to_version"], "signers": journal.data.get("signers", []),
            "downtime_seconds": journal.data.get("downtime_seconds"),
            "verified_at": journal.data.get("verified_at"), "expires_at": journal.data.get("expires_at"),
            "created_at": journal.data.get("created_at")}


def _step_outcome(record: StepRecord) -> str:
    return {"done": "done", "undone": "undone", "failed": "failed"}.get(record.state, "skipped")


# -- recovery -------------------------------------------------------------------------------------


def recover(paths: HostPaths, ui: Ui) -> Journal | None:
    """Roll back an upgrade a killed run left unfinished (call under installer_lock). None if there was none."""
    journal = unfinished(paths)
    if journal is None:
        return None
    ui.info(f"An unfinished {journal.kind} {journal.from_version} -> {journal.to_version} from {journal.started_at} "
            f"was found ({paths.journal}); rolling it back to {journal.from_version}.")
    if journal.failed_step is None:
        journal.failed_step = next((s.name for s in journal.steps if s.state == "started"), None)
    roll_back(Run(journal, paths, ui))
    ui.info(f"Rolled back: {journal.from_version} runs again.")
    return journal


def recover_locked(paths: HostPaths, ui: Ui) -> None:
    """recover() under the installer's lock, for `status`; nothing to do when no journal is unfinished."""
    if unfinished(paths) is None:
        return
    with installer_lock(paths):
        recover(paths, ui)


# -- the commands ---------------------------------------------------------------------------------


def prepare(options: UpgradeOptions, paths: HostPaths, ui: Ui) -> tuple[Run, Plan]:
    """verify -> floor -> plan, changing nothing; the Run holds the open bundle for staging."""
    config = installed_config(paths, options.config_file)
    with _bundle_step("Verify bundle"):
        bundle = open_bundle(options.bundle)
    timers: dict[str, float] = {}
    try:
        with ui.step("Verify bundle"), _bundle_step("Verify bundle"):
            timer = Timer()
            result, policy = verify(bundle, InstallOptions(options.bundle, config, None, frozenset(),
                                                           options.accept_expired, options.downgrade_authorization),
                                    paths, ui)
            timers["verify"] = timer.seconds
        with ui.step("Version floor"):
            timer = Timer()
            check_expected(result, options.expect_manifest)
            check_floor(result, paths)
            timers["floor"] = timer.seconds
        with ui.step("Plan"):
            timer = Timer()
            plan = make_plan(bundle, result, paths)
            check_schema(plan)
            timers["plan"] = timer.seconds
    except BaseException:
        bundle.close()
        raise
    data = {"bundle": str(options.bundle), "manifest_sha256": result.manifest_sha256, "config": _config_json(config),
            "signers": [s.to_json() for s in result.signers], "plan": plan.to_json(), "actor": options.actor,
            "downgrade_authorization": result.receipt().get("downgrade_authorization"),
            **{k: result.receipt().get(k) for k in ("verified_at", "expires_at", "created_at")}}
    journal = Journal.new("upgrade", paths.installed_version(), result.manifest.version, list(STEPS), data)
    for name, seconds in timers.items():
        journal.step(name).state, journal.step(name).seconds = "done", seconds
    return Run(journal, paths, ui, bundle, result, policy), plan


def upgrade(options: UpgradeOptions, paths: HostPaths, ui: Ui, *, plan_only: bool,
            confirm: Callable[[Plan], bool]) -> tuple[Plan, Journal | None]:
    """The plan (and nothing else when plan_only or not confirmed), else the finished upgrade's journal."""
    with installer_lock(paths):
        recover(paths, ui)
        run, plan = prepare(options, paths, ui)
        assert run.bundle is not None
        with run.bundle:
            if plan_only or not confirm(plan):
                return plan, None
            check_disk(plan)
            run_steps(run)
            assert run.result is not None
            # Only now, healthy on the new release: a failed upgrade keeps the keys it was verified with.
            run.journal.data["keys_pinned"] = pin_rotated_keys(run.result, paths)
            finish(run, "succeeded")
        return plan, run.journal


def rollback(paths: HostPaths, ui: Ui, *, confirm: Callable[[Journal], bool], actor: str = "root") -> Journal:
    """Undo the last succeeded upgrade (or an unfinished one): the previous release, the backup taken before."""
    with installer_lock(paths):
        recovered = recover(paths, ui)
        if recovered is not None:
            return recovered
        journal = _last_upgrade(paths)
        if not confirm(journal):
            raise InstallError("rollback not confirmed; nothing was changed.", "Pass --yes to roll back.")
        journal.data["rerecord"] = [release_record(journal, paths)]
        journal.kind, journal.failed_step, journal.started_at = "rollback", None, now_iso()
        journal.data["actor"] = actor
        run = Run(journal, paths, ui)
        with ui.step("Enter maintenance mode"):
            _optional_cli(run, "maintenance", "enter", "--reason", f"rollback to {journal.from_version}")
        roll_back(run)
        return journal


def _last_upgrade(paths: HostPaths) -> Journal:
    from installer.journal import load

    journal = load(paths)
    current = paths.installed_version()
    if journal is None or journal.kind != "upgrade" or journal.outcome != "succeeded" \
            or journal.to_version != current:
        raise InstallError(f"no upgrade to roll back: {current} was not installed by the last upgrade on this host.",
                           "Restore a backup instead: appliance-installer restore BACKUP.", step="Rollback")
    if not paths.release(str(journal.from_version)).exists() or not Path(journal.data.get("backup", "")).exists():
        raise InstallError(f"the previous release {journal.from_version} or the backup taken before the upgrade is "
                           "gone.", f"Check {paths.releases} and {paths.backups}.", step="Rollback")
    return journal
