"""`appliance-installer`: the operator's tool on the offline host. Subcommands land with the installer issue."""

from __future__ import annotations

import click

PLANNED = {
    "install BUNDLE [--config FILE]": "verify, preflight, extract, run playbooks/site.yml, health-check",
    "preflight BUNDLE": "check OS, systemd, CPU, memory, disk, ports, clock, hostname",
    "status": "installed version, unit states, certificate expiry, last verification",
    "upgrade BUNDLE": "verify, back up, install beside, migrate, switch, health gates, roll back on failure",
    "uninstall [--purge]": "stop and remove services; keep /var/lib/appliance unless --purge",
}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Install and upgrade the appliance from a signed offline bundle (not built yet)."""
    click.echo("appliance-installer is not built yet. Planned subcommands:")
    for usage, what in PLANNED.items():
        click.echo(f"  {usage:<34} {what}")
    raise SystemExit(2)
