"""`appliance relay serve`: the DERP relay as its own process on a unix socket, behind nginx (installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.config import load_server_config
from appliance.logs import configure_logging
from appliance.relay import front

DEFAULT_SOCKET = Path("/run/appliance-relay/relay.sock")


@click.group()
def relay() -> None:
    """The DERP relay every byte between a developer and a workspace goes through."""


@relay.command()
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="Config file [env APPLIANCE_CONFIG; default /etc/appliance/appliance.toml if present]")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path, dir_okay=False), default=DEFAULT_SOCKET,
              show_default=True, help="Unix socket to serve on; nginx proxies /derp to it.")
def serve(socket_path: Path, **flags: Any) -> None:
    """Serve /derp and /derp/latency-check on a unix socket, behind nginx.

    `appliance server` serves the relay on its own port; this command is for an installed appliance,
    with the same appliance.toml (its database for admission, its pki_dir for the relay's key).
    """
    config = load_server_config(flags)
    configure_logging(config.log_format, config.log_level)
    front.serve(config, socket_path)
