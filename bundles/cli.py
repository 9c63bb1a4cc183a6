"""`appliance-bundle`: build side of the signed bundle. Subcommands land with the bundles issue."""

from __future__ import annotations

import click

PLANNED = {
    "build --recipe FILE --version V --output DIR": "collect wheels, debs, playbooks, installer, SBOM",
    "sign BUNDLE --key FPR [--key ...]": "add detached GPG signatures over manifest.json",
    "verify BUNDLE --keyring FILE": "m-of-n signatures, every member hash, no extra or unsafe member",
    "inspect BUNDLE": "version, signers, expiry, sizes by role, SBOM counts",
    "diff OLD NEW": "added, removed and changed packages, wheels, providers, images",
    "keys generate": "a release key for testing",
}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Build, sign and verify appliance bundles (not built yet)."""
    click.echo("appliance-bundle is not built yet. Planned subcommands:")
    for usage, what in PLANNED.items():
        click.echo(f"  {usage:<46} {what}")
    raise SystemExit(2)
