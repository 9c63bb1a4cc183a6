"""The gateway's aiohttp application: shared state, error middleware, and one module per route family.

Route families: logs.py (build and import log follows, server-sent events), upgrades.py (the Upgrade
page's bundle verification and upgrade progress, server-sent events), terminal.py (the web
terminal's WebSocket to a workspace agent's reconnecting PTY), debug.py (the health report's WebSocket
echo), apps.py (workspace apps by path, HTTP
and WebSocket proxied through the relay) and the relay (appliance/relay/http.py: /derp with Upgrade:
DERP or WebSocket, /derp/latency-check). Database
work runs in a small thread pool beside the event loop, through the services and the authentication
the API uses, so authorization is the API's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.gateway import apps, debug, logs, terminal, upgrades
from appliance.gateway.errors import error_response, json_errors
from appliance.gateway.state import CONFIG, DATABASE, EXECUTOR, FALLBACK, Fallback
from appliance.metrics.live import websockets_gauge
from appliance.metrics.websockets import count_websockets
from appliance.relay import http as relay_http

DB_THREADS = 8  # database calls in flight at once; followers of one job share its reads


async def not_routed_here(request: web.Request) -> web.StreamResponse:
    """Installed behind nginx, the gateway receives only what nginx routes to it."""
    return error_response(404, f"No gateway endpoint {request.method} {request.path}.",
                          "nginx routes only long-lived requests (log follows, terminals, apps) to the gateway; "
                          "compare /etc/nginx/appliance.d/gateway.conf with the gateway role's template.")


def create_gateway(config: ServerConfig, db: Database, fallback: Fallback = not_routed_here, *,
                   relay: bool = True) -> web.Application:
    """The gateway; `fallback` answers what it does not serve (the embedded front proxies to the WSGI app).

    `relay`: serve the DERP relay on /derp too (embedded: one port); installed, the relay is its own unit.
    """
    websockets_gauge()  # the series exists (0) from the start, not only after a first terminal
    app = web.Application(middlewares=[count_websockets, json_errors])
    app[CONFIG] = config
    app[DATABASE] = db
    app[EXECUTOR] = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="gateway-db")
    app[FALLBACK] = fallback
    app.cleanup_ctx.append(_executor_lifetime)
    logs.init_app(app)
    terminal.init_app(app)
    upgrades.init_app(app)  # the Upgrade page's verification and progress streams
    debug.init_app(app)  # the health report's WebSocket echo
    apps.init_app(app)  # /@owner/workspace.agent/apps/slug/...: before the embedded front's catch-all
    if relay:
        relay_http.init_app(app, config, db)
    return app


async def _executor_lifetime(app: web.Application) -> AsyncIterator[None]:
    yield
    app[EXECUTOR].shutdown(wait=False, cancel_futures=True)
