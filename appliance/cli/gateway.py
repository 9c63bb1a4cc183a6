"""`appliance gateway`: serve long-lived connections (log follows) for nginx, on a unix socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.config import load_server_config
from appliance.gateway import standalone
from appliance.logs import configure_logging

DEFAULT_SOCKET = Path("/run/appliance-gateway/gateway.sock")


@click.command()
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="Config file [env APPLIANCE_CONFIG; default /etc/appliance/appliance.toml if present]")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path, dir_okay=False), default=DEFAULT_SOCKET,
              show_default=True, help="Unix socket to serve on; nginx proxies log follows to it.")
def gateway(socket_path: Path, **flags: Any) -> None:
    """Serve log follows (server-sent events) on a unix socket, behind nginx.

    `appliance server` runs the gateway itself; this command is for an installed appliance,
    beside the console under gunicorn, with the same appliance.toml.
    """
    config = load_server_config(flags)
    configure_logging(config.log_format, config.log_level)
    standalone.serve(config, socket_path)
