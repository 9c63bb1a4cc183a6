"""coderd_api_concurrent_websockets: the gateway's WebSockets (web terminals, apps) open now.

A WebSocket handler returns when its socket closes, so a request asking for the upgrade is counted
for as long as its handler runs. The relay's /derp connections are peers, counted by the relay
itself (appliance_relay_peers), so they are left out here in both layouts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from appliance.metrics.live import websockets_gauge
from appliance.sdk.relay_constants import RELAY_PATH

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_websocket(request: web.Request) -> bool:
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    return request.headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in connection


@web.middleware
async def count_websockets(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_websocket(request) or request.path.startswith(RELAY_PATH):
        return await handler(request)
    gauge = websockets_gauge()
    gauge.inc()
    try:
        return await handler(request)
    finally:
        gauge.dec()
