"""`appliance registry`: write the internal registry's config, and collect its garbage read-only."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from appliance.config import ServerConfig, load_server_config
from appliance.pki.layout import PkiLayout
from appliance.registry import gc, site
from appliance.registry.config import write_registry_config


@click.group()
@click.option("--config", default=None, help="Config file [env APPLIANCE_CONFIG].")
@click.option("--data-dir", default=None, help="State directory [env APPLIANCE_DATA_DIR].")
@click.pass_context
def registry(ctx: click.Context, config: str | None, data_dir: str | None) -> None:
    """Administer the internal container registry (CNCF Distribution)."""
    ctx.obj = {"config": config, "data_dir": data_dir}


def _config(ctx: click.Context) -> ServerConfig:
    return load_server_config(ctx.obj)


@registry.command("write-config")
@click.option("--output", "output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Where to write Distribution's config (mode 0600), e.g. /var/lib/appliance/registry/config.yml.")
@click.pass_context
def write_config(ctx: click.Context, output: Path) -> None:
    """Write the registry's config from appliance.toml: address, storage, TLS and token auth from the CA."""
    config = _config(ctx)
    write_registry_config(site.settings(config), output)
    click.echo(f"Wrote {output} (registry on {config.registry_address}, storage {site.storage_dir(config)}).")
    cert = PkiLayout(config.pki_dir).live_fullchain(site.CERT_NAME)
    if not cert.is_file():
        dns, ips = site.host_names(config)
        names = " ".join([*(f"--dns {name}" for name in dns), *(f"--ip {ip}" for ip in ips)])
        click.secho(f"warning: {cert} does not exist yet; issue it: appliance pki issue {site.CERT_NAME} {names}",
                    fg="yellow", err=True)


def _switch(config: ServerConfig) -> gc.Switch:
    address = config.registry_address
    if config.registry_embedded:
        return gc.EmbeddedSwitch(site.pid_file(config), address.host, address.port)
    return gc.SystemdSwitch(site.UNIT, address.host, address.port)


@registry.command("gc")
@click.option("--registry-config", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The config file the registry runs with [default: REGISTRY_DIR/config.yml].")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; the registry stays writable.")
@click.option("--yes", is_flag=True, help="Do not ask before refusing pushes for the duration.")
@click.option("--output", "-o", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def collect(ctx: click.Context, registry_config: Path | None, dry_run: bool, yes: bool, output: str) -> None:
    """Delete untagged manifests and unreferenced blobs, with the registry read-only meanwhile."""
    config = _config(ctx)
    config_file = registry_config or site.config_file(config)
    if dry_run:
        report = gc.collect(config_file, dry_run=True)
    else:
        if not yes:
            click.confirm("Pushes to the registry are refused while garbage collection runs. Continue?", abort=True)
        with gc.read_only(config_file, _switch(config)):
            report = gc.collect(config_file)
    if output == "json":
        click.echo(json.dumps({**asdict(report), "bytes_freed": report.bytes_freed}, indent=2))
        return
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(f"{verb} {report.manifests_deleted} manifests and {report.blobs_deleted} blobs; "
               f"freed {report.bytes_freed / 1e6:.1f} MB ({report.bytes_before / 1e6:.1f} MB before).")
