"""`appliance gateway` and `appliance relay serve`: an aiohttp app as its own process on a unix socket, behind nginx."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.db.migrate import require_current_schema
from appliance.errors import ConfigError

log = logging.getLogger("appliance.gateway")

SOCKET_MODE = 0o660  # owner and the appliance group, which nginx's workers are in


AppFactory = Callable[[ServerConfig, Database], web.Application]


def check_config(config: ServerConfig, what: str = "the gateway") -> str:
    """The database URL, once the schema is known to be current (the same rule as appliance.wsgi)."""
    return require_current_schema(config.postgres_url, what)


def gateway_app(config: ServerConfig, db: Database) -> web.Application:
    # Imported here: the gateway pulls in Flask and the console, which `appliance relay serve` must not load.
    from appliance.gateway.app import create_gateway
    from appliance.metrics.live import prepare_multiproc_dir

    prepare_multiproc_dir()  # the console's scrape reads this process's WebSocket gauge there (docs/adr/0042)
    return create_gateway(config, db, relay=False)  # installed, the relay is its own unit


def serve(config: ServerConfig, socket_path: Path, factory: AppFactory = gateway_app, name: str = "gateway") -> None:
    """Serve `factory`'s app on `socket_path` until SIGTERM or SIGINT."""
    db = Database(check_config(config, f"the {name}"))
    socket_path.unlink(missing_ok=True)  # left behind by a process that was killed
    try:
        asyncio.run(_serve(factory(config, db), socket_path, name))
    finally:
        db.close()
        socket_path.unlink(missing_ok=True)


async def _serve(app: web.Application, socket_path: Path, name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=3.0)
    await runner.setup()
    try:
        await web.UnixSite(runner, str(socket_path)).start()
    except OSError as err:
        raise ConfigError(f"Cannot listen on {socket_path}: {err.strerror}.",
                          "Check that its folder exists and this user may write to it (--socket).") from err
    await asyncio.to_thread(socket_path.chmod, SOCKET_MODE)
    log.info(f"{name}_listening", extra={"socket": str(socket_path)})
    try:
        await stop.wait()
    finally:
        log.info(f"{name}_stopping")
        await runner.cleanup()
