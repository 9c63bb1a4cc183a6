"""`appliance images`: import images into the internal registry, and list what it holds."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from appliance.config import ServerConfig, load_server_config
from appliance.pki.ca import CertificateAuthority
from appliance.registry import images as registry_images
from appliance.registry import site


@click.group()
@click.option("--config", default=None, help="Config file [env APPLIANCE_CONFIG].")
@click.option("--data-dir", default=None, help="State directory [env APPLIANCE_DATA_DIR].")
@click.pass_context
def images(ctx: click.Context, config: str | None, data_dir: str | None) -> None:
    """Manage the images in the internal registry (run on the appliance host, with access to its CA)."""
    ctx.obj = {"config": config, "data_dir": data_dir}


def _site(ctx: click.Context) -> tuple[ServerConfig, CertificateAuthority]:
    config = load_server_config(ctx.obj)
    return config, CertificateAuthority.for_site(config)


@images.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option("--name", default=None, help="REPO:TAG to store it as [default: the layout's ref or the archive's tag].")
@click.option("--ref", default=None, help="Which image of an OCI layout holding several (its ref.name annotation).")
@click.pass_context
def import_image(ctx: click.Context, path: Path, name: str | None, ref: str | None) -> None:
    """Import an OCI layout directory or a docker-archive tar into the registry (with skopeo)."""
    config, ca = _site(ctx)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with console.status(f"Importing {escape(str(path))} ...") as status:
        imported = registry_images.import_image(
            ca, site.advertised_host(config), path.resolve(), name, ref,
            progress=lambda line: status.update(f"[dim]{escape(line)}[/]") if line else None)
    click.echo(f"Imported {imported.reference} ({imported.digest}, {imported.bytes / 1e6:.1f} MB).")
