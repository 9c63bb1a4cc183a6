"""`appliance runtime serve`: the runtime service as its own root unit (appliance-runtime.service)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import click

from appliance.config import load_server_config
from appliance.logs import configure_logging
from appliance.runtime.service import RuntimeSettings, serve_forever


@click.group()
def runtime() -> None:
    """Run the service that owns podman for workspace builds."""


@runtime.command()
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="Config file [env APPLIANCE_CONFIG; default /etc/appliance/appliance.toml if present]; "
                   "reads runtime_socket, access_url, registry_address and pki_dir.")
def serve(**flags: Any) -> None:
    """Serve the runtime API on runtime_socket until SIGTERM; run as root beside rootful podman."""
    config = load_server_config(flags)
    configure_logging(config.log_format, config.log_level)
    asyncio.run(_serve(RuntimeSettings.from_config(config)))


async def _serve(settings: RuntimeSettings) -> None:
    task = asyncio.create_task(serve_forever(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
