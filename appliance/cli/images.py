"""`appliance images`: import images into the internal registry, and list what it holds."""

from __future__ import annotations

from pathlib import Path

import click
import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.markup import escape

from appliance.cli.output import emit, output_option
from appliance.config import ServerConfig, load_server_config
from appliance.db.embedded import EmbeddedPostgres
from appliance.errors import OperatorError
from appliance.pki.ca import CertificateAuthority
from appliance.registry import images as registry_images
from appliance.registry import site
from appliance.templates import images as template_images


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


def _template_usage(config: ServerConfig) -> dict[str, list[str]] | None:
    """Which templates use which image, from the database when it answers (None when it does not)."""
    try:
        conninfo = config.postgres_url or EmbeddedPostgres(config.data_dir / "postgres").conninfo()
        with psycopg.connect(conninfo, connect_timeout=5, row_factory=dict_row) as conn:
            return template_images.usage(conn)
    except (OSError, psycopg.Error):
        return None


@images.command("list")
@output_option
@click.pass_context
def list_images(ctx: click.Context, output: str) -> None:
    """List repositories, tags, digests and sizes in the registry, and the templates that use each."""
    config, ca = _site(ctx)
    used = _template_usage(config)
    listing = template_images.listing(site.catalog(config, ca, registry_images.TOOL_SUBJECT),
                                      site.advertised_host(config), site.internal_hosts(config), used or {})
    if not listing.reachable:
        raise OperatorError(listing.problem or "The registry did not answer.", listing.hint or "")
    rows = [(repository.name, tag) for repository in listing.repositories for tag in repository.tags]
    emit(rows, [("REPOSITORY", lambda r: r[0]), ("TAG", lambda r: r[1].tag), ("DIGEST", lambda r: r[1].digest),
                ("SIZE", lambda r: f"{r[1].size / 1e6:.1f} MB"),
                ("TEMPLATES", lambda r: ", ".join(r[1].templates) if used is not None else "(database not reachable)")],
         output, raw=listing)
