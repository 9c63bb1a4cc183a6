"""`appliance agent`: package the workspace agent executable (build side: needs the build extra)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from appliance import __version__
from appliance.config import load_server_config
from appliance.server.agent_binary import default_cache_dir, package_agent


@click.group()
def agent() -> None:
    """Build the workspace agent that the control plane serves at /bin/appliance-agent-linux-amd64."""


@agent.command()
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where built executables are kept by a digest of their inputs [default: beside "
                   "provider_cache_dir, ~/.cache/appliance/agent].")
def package(out_dir: Path, cache_dir: Path | None) -> None:
    """Write the agent executable to OUT_DIR/appliance-agent-linux-amd64.

    PyInstaller takes about a minute; an unchanged agent comes from the cache at once. Point
    agent_binary_dir at OUT_DIR for the control plane to serve it.
    """
    started = time.monotonic()
    binary = package_agent(out_dir, cache_dir or default_cache_dir(load_server_config()))
    click.echo(f"Packaged the workspace agent {__version__} as {binary} in {time.monotonic() - started:.1f}s.")
