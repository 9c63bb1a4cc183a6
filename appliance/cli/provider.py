"""`appliance provider`: package the appliance's own Terraform provider and publish it into a mirror tree."""

from __future__ import annotations

import time
from pathlib import Path

import click

from appliance import __version__
from appliance.config import load_server_config
from appliance.provider import SOURCE
from appliance.provider.packaging import package_provider, publish_provider
from appliance.server.provider import signing_home as server_signing_home
from mirror.signing import signing_key

_CACHE_OPTION = click.option(
    "--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Where built provider zips are kept by a digest of their inputs [env APPLIANCE_PROVIDER_CACHE_DIR; "
         "appliance.toml key provider_cache_dir; default ~/.cache/appliance/provider].")


@click.group()
def provider() -> None:
    """Package and publish the appliance Terraform provider (build side: needs the build extra)."""


@provider.command()
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@_CACHE_OPTION
def package(out_dir: Path, cache_dir: Path | None) -> None:
    """Build the provider zip into OUT_DIR, laid out for `appliance mirror build --from OUT_DIR`.

    PyInstaller takes about a minute; an unchanged provider comes from the cache at once.
    """
    started = time.monotonic()
    archive = package_provider(out_dir, cache_dir or load_server_config().provider_cache_dir)
    click.echo(f"Packaged {SOURCE} {__version__} as {archive} in {time.monotonic() - started:.1f}s.")


@provider.command()
@click.argument("mirror_dir", required=False, type=click.Path(path_type=Path, file_okay=False))
@_CACHE_OPTION
@click.option("--signing-home", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="GPG home of the mirror signing key, made there on first use "
                   "[env APPLIANCE_MIRROR_SIGNING_HOME; default DATA_DIR/mirror-signing].")
def publish(mirror_dir: Path | None, cache_dir: Path | None, signing_home: Path | None) -> None:
    """Add the provider to the mirror tree MIRROR_DIR: its network mirror and its registry.

    MIRROR_DIR defaults to the server's mirror_dir (appliance.toml, APPLIANCE_MIRROR_DIR), the
    tree `appliance server` serves. A rebuild of the same version from changed sources replaces
    the one in the tree. `appliance server` with embedded PostgreSQL does this itself at start.
    """
    started = time.monotonic()
    config = load_server_config()
    target = mirror_dir or config.mirror_dir
    key = signing_key(signing_home or server_signing_home(config))
    published = publish_provider(target, cache_dir or config.provider_cache_dir, key)
    if published.added or published.replaced:
        replaced = f", replacing {published.replaced} older build(s)" if published.replaced else ""
        outcome = f"Published {SOURCE} {__version__} into {target} (mirror and registry{replaced})"
    else:
        outcome = f"{target} already has {SOURCE} {__version__} as built from these sources"
    click.echo(f"{outcome} ({time.monotonic() - started:.1f}s).")
