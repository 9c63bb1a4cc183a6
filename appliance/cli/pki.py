"""`appliance pki`: the internal CA (init, issue, renew, revoke, list, status, trust-bundle, export-root)
and the SSH user CA (ssh-user-ca)."""

from __future__ import annotations

import json
import logging
import pwd
import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli.output import Column, emit, output_option
from appliance.config import load_server_config, parse_duration
from appliance.errors import OperatorError, RequestError
from appliance.logs import configure_logging
from appliance.pki import certs
from appliance.pki.ca import CaSettings, CertificateAuthority, IssueRequest
from appliance.pki.keys import KEY_TYPES
from appliance.pki.passphrase import read_passphrase
from appliance.pki.ssh_ca import ensure_ssh_user_ca
from appliance.pki.status import pki_status

log = logging.getLogger("appliance.pki")
CERT_COLUMNS: list[Column] = [
    ("Name", lambda r: r["name"]),
    ("Serial", lambda r: r["serial"]),
    ("State", lambda r: r["state"]),
    ("Expires", lambda r: r["not_after"][:10]),
    ("Days left", lambda r: r["days_left"]),
    ("Names", lambda r: ", ".join([*r["dns_names"], *r["ip_addresses"]])),
]


def _prompt(confirm: bool) -> str:
    return str(click.prompt("Root key passphrase", hide_input=True, confirmation_prompt=confirm, err=True))


def _owner(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError as err:
        raise OperatorError(f"No such user {user!r} to own the key.", "Create the service user first.") from err
    return entry.pw_uid, entry.pw_gid


def _ca(ctx: click.Context, owner: str | None = None) -> CertificateAuthority:
    return CertificateAuthority.for_site(load_server_config(ctx.obj), owner=_owner(owner))


class _RequestErrors(click.Group):
    """Client-style refusals (bad name, conflict) print like operator errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RequestError as err:
            raise OperatorError(err.message, err.detail) from err


@click.group(cls=_RequestErrors)
@click.option("--config", default=None, help="Config file [env APPLIANCE_CONFIG].")
@click.option("--data-dir", default=None,
              help="State directory; the CA lives in DATA_DIR/pki [env APPLIANCE_DATA_DIR].")
@click.pass_context
def pki(ctx: click.Context, config: str | None, data_dir: str | None) -> None:
    """Run the internal certificate authority that every appliance service trusts."""
    ctx.obj = {"config": config, "data_dir": data_dir}


@pki.command()
@click.option("--key-type", type=click.Choice(["ecdsa-p384", "rsa-4096"]), default="ecdsa-p384", show_default=True)
@click.option("--root-days", default=3650, show_default=True, type=click.IntRange(30, 7300))
@click.option("--intermediate-days", default=730, show_default=True, type=click.IntRange(7, 3650))
@click.option("--common-name", default="Appliance Root CA", show_default=True)
@click.option("--passphrase-file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--owner", default=None, help="User owning the intermediate key (the service user).")
@click.pass_context
def init(ctx: click.Context, key_type: str, root_days: int, intermediate_days: int, common_name: str,
         passphrase_file: Path | None, owner: str | None) -> None:
    """Create the root CA (key encrypted with a passphrase) and the intermediate that issues."""
    ca = _ca(ctx, owner)
    passphrase = read_passphrase(passphrase_file, prompt=_prompt, confirm=True)
    ca.init(passphrase, CaSettings(key_type, root_days, intermediate_days, common_name))
    click.echo(f"CA created in {ca.root}.")
    click.echo(f"Root fingerprint (SHA-256): {ca.root_fingerprint()}")
    click.echo("Compare it out of band with what clients see; keep the passphrase offline, and consider "
               "'appliance pki export-root --remove' once the services have their certificates.")


@pki.command()
@click.argument("name")
@click.option("--dns", multiple=True, help="DNS name (repeatable).")
@click.option("--ip", multiple=True, help="IP address (repeatable).")
@click.option("--days", default=90, show_default=True, type=int)
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True)
@click.option("--client", is_flag=True, help="A client certificate (clientAuth) instead of a server one.")
@click.option("--owner", default=None, help="User owning the key file (the service user).")
@click.pass_context
def issue(ctx: click.Context, name: str, dns: tuple[str, ...], ip: tuple[str, ...], days: int, key_type: str,
          client: bool, owner: str | None) -> None:
    """Issue a certificate NAME with subject alternative names; files land in DATA_DIR/pki/live/NAME."""
    ca = _ca(ctx, owner)
    record = ca.issue(IssueRequest(name, dns, ip, days=days, key_type=key_type, is_client=client))
    click.echo(f"Issued {name}: serial {record.serial}, expires {record.not_after:%Y-%m-%d %H:%M} UTC.")
    click.echo(f"  certificate {ca.layout.live_cert(name)}")
    click.echo(f"  full chain  {ca.layout.live_fullchain(name)}")
    click.echo(f"  key         {ca.layout.live_key(name)} (mode 0600)")


@pki.command()
@click.argument("name", required=False)
@click.option("--due", "within", default=None, help="Renew every certificate expiring within this (e.g. 30d).")
@click.option("--days", default=None, type=int, help="New validity (default: the old one's).")
@click.option("--owner", default=None, help="User owning the new key file.")
@click.pass_context
def renew(ctx: click.Context, name: str | None, within: str | None, days: int | None, owner: str | None) -> None:
    """Reissue NAME with a new key, or with --due every certificate close to expiry."""
    config = load_server_config(ctx.obj)
    ca = CertificateAuthority.for_site(config, owner=_owner(owner))
    if (name is None) == (within is None):
        raise OperatorError("Give either a certificate NAME or --due WINDOW.", "e.g. 'appliance pki renew --due 30d'.")
    renewed = ca.renew_due(parse_duration(within)) if within else [ca.renew(name or "", days=days)]
    if config.log_format == "json":  # its timer on an installed host: events in the journal, as every unit logs
        configure_logging("json")
        for record in renewed:
            log.info("certificate_renewed", extra={"certificate": record.name, "serial": record.serial,
                                                   "not_after": record.not_after.isoformat()})
        if not renewed:
            log.info("certificate_renewal_not_due", extra={"within": within})
        return
    for record in renewed:
        click.echo(f"Renewed {record.name}: serial {record.serial}, expires {record.not_after:%Y-%m-%d}.")
    if not renewed:
        click.echo("Nothing is due for renewal.")


@pki.command()
@click.argument("serial")
@click.option("--reason", type=click.Choice(list(certs.REVOCATION_REASONS)), required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def revoke(ctx: click.Context, serial: str, reason: str, yes: bool) -> None:
    """Revoke a certificate by serial and republish the CRL."""
    if not yes:
        click.confirm(f"Revoke certificate {serial} ({reason})? Services using it stop being trusted.",
                      abort=True, err=True)
    record = _ca(ctx).revoke(serial, reason)
    click.echo(f"Revoked {record.name} (serial {record.serial}); the CRL is updated.")


@pki.command("list")
@output_option
@click.option("--warn-within", default="30d", show_default=True)
@click.pass_context
def list_certs(ctx: click.Context, output: str, warn_within: str) -> None:
    """List every certificate the CA issued, with expiry and revocation."""
    report = pki_status(_ca(ctx), parse_duration(warn_within))
    emit(report["certificates"], CERT_COLUMNS, output)


@pki.command()
@output_option
@click.option("--warn-within", default="30d", show_default=True, help="Exit 1 if anything expires this soon.")
@click.pass_context
def status(ctx: click.Context, output: str, warn_within: str) -> None:
    """Show the CA and certificate health; exit 1 when anything expires within the window."""
    report = pki_status(_ca(ctx), parse_duration(warn_within))
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"Root CA:        {report['root']['subject']}, expires {report['root']['not_after'][:10]}")
        click.echo(f"  fingerprint   {report['root']['fingerprint']}")
        click.echo(f"  key on host   {'yes' if report['root']['key_on_host'] else 'no (exported)'}")
        click.echo(f"Intermediate:   expires {report['intermediate']['not_after'][:10]}")
        crl_next = report["crl_next_update"]
        click.echo(f"CRL:            next update {crl_next[:16] if crl_next else 'missing'}")
        emit(report["certificates"], CERT_COLUMNS, "table")
        for problem in report["problems"]:
            click.secho(f"warning: {problem}", fg="yellow", err=True)
    if report["problems"]:
        sys.exit(1)


@pki.command("trust-bundle")
@click.option("--output-file", "-f", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.pass_context
def trust_bundle(ctx: click.Context, output_file: Path | None) -> None:
    """Print the PEM bundle clients trust (root + intermediate) and the root's fingerprint."""
    ca = _ca(ctx)
    bundle = ca.trust_bundle_pem()
    if output_file:
        output_file.write_bytes(bundle)
        click.echo(f"Wrote {output_file}.", err=True)
    else:
        click.echo(bundle.decode(), nl=False)
    click.echo(f"Root fingerprint (SHA-256): {ca.root_fingerprint()}", err=True)


@pki.command("export-root")
@click.argument("destination", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--remove", is_flag=True, help="Delete the root key from this host after a verified copy.")
@click.option("--passphrase-file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.pass_context
def export_root(ctx: click.Context, destination: Path, remove: bool, passphrase_file: Path | None) -> None:
    """Copy the encrypted root key to DESTINATION (removable media); --remove deletes it here."""
    ca = _ca(ctx)
    ca.export_root(destination, read_passphrase(passphrase_file, prompt=_prompt), remove=remove)
    click.echo(f"Root key exported to {destination} (still encrypted with its passphrase).")
    if remove:
        click.echo("The root key is no longer on this host; issuing continues through the intermediate.")



@pki.command("ssh-user-ca")
@click.option("--owner", default=None, help="User owning the key (the service user), when run as root.")
@click.pass_context
def ssh_user_ca(ctx: click.Context, owner: str | None) -> None:
    """Create the SSH user CA if missing (the server also makes it on first use) and print its public key."""
    config = load_server_config(ctx.obj)
    click.echo(ensure_ssh_user_ca(config.pki_dir, _owner(owner)).public_line)
