"""The relay on HTTP: /derp (`Upgrade: DERP` or the WebSocket fallback), /derp/probe and /derp/latency-check.

`init_app(app, config, db)` mounts the routes and owns the relay's lifetime on that application: the
server key (a 0600 file that survives restarts), admission following relay_peers, the counters'
writer, a once-a-second sweep, and Restarting to every client on graceful shutdown. The gateway
mounts it (one port in embedded mode); `appliance relay serve` runs it alone on a unix socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from aiohttp import WSMsgType, web

from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.relay import frames
from appliance.relay.inbox import Inbox, close_transport
from appliance.relay.service import RelayService, build_service
from appliance.relay.upgrade import PROBE_HEADERS, Refusal, derp_switch_headers, requested_upgrade
from appliance.sdk.relay_constants import RELAY_LATENCY_PATH, RELAY_PATH

log = logging.getLogger("appliance.relay")

WS_CLOSE_SECONDS = 2.0


RELAY = web.AppKey("relay", RelayService)


# --- the two byte connections ---

class RawConn:
    """The hijacked HTTP/1.1 socket after our 101: aiohttp feeds us its bytes as a payload parser."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.remote = request.remote or ""
        self._response = response
        self._transport = request.transport
        self._inbox = Inbox(request.transport)

    # aiohttp's payload-parser interface (what WebSocketReader offers)
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._inbox.feed(data)
        return False, b""

    def feed_eof(self) -> None:
        self._inbox.feed_eof()

    async def read_exactly(self, n: int) -> bytes:
        return await self._inbox.read_exactly(n)

    async def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        await self._response.write(data)

    async def close(self) -> None:
        close_transport(self._transport)
        self._inbox.feed_eof()


class WebSocketConn:
    """DERP's byte stream in binary WebSocket messages, split wherever the peer split it."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.remote = request.remote or ""
        self._ws = ws
        self._transport = request.transport
        self._buffer = frames.Chunks()

    async def read_exactly(self, n: int) -> bytes:
        while self._buffer.size < n:
            message = await self._ws.receive()
            if message.type is not WSMsgType.BINARY:
                raise ConnectionResetError(f"the WebSocket ended ({message.type.name})")
            self._buffer.append(message.data)
        return self._buffer.take(n)

    async def write(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self) -> None:
        try:
            async with asyncio.timeout(WS_CLOSE_SECONDS):
                await self._ws.close()
        except TimeoutError:  # a peer that does not read cannot take our close frame either
            if self._transport is not None:
                self._transport.abort()


# --- handlers ---

async def derp(request: web.Request) -> web.StreamResponse:
    service = request.app[RELAY]
    wanted = requested_upgrade(request.headers, service.accept, service.stats)
    if isinstance(wanted, Refusal):
        return web.Response(status=wanted.status, text=wanted.text, headers=wanted.headers)
    if wanted == "websocket":
        return await _websocket(request, service)
    response = web.StreamResponse(status=101, headers=derp_switch_headers(service.relay.key.public_hex))
    response.force_close()
    await response.prepare(request)
    conn = RawConn(request, response)
    # The same hand-over WebSocketResponse does: the rest of the socket's bytes go to our parser.
    request.protocol.set_parser(cast(Any, conn))
    request.protocol.keep_alive(False)
    await service.relay.serve(conn)
    return response


async def _websocket(request: web.Request, service: RelayService) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=("derp",), compress=False, autoping=True,
                               max_msg_size=frames.MAX_FRAME_SIZE + frames.HEADER_LEN)
    await ws.prepare(request)
    await service.relay.serve(WebSocketConn(request, ws))
    return ws


async def probe(request: web.Request) -> web.StreamResponse:
    """/derp/probe and /derp/latency-check: an empty 200 any origin may time."""
    return web.Response(status=200, headers=PROBE_HEADERS)


# --- lifetime ---

def init_app(app: web.Application, config: ServerConfig, db: Database) -> None:
    """Mount the relay's routes on `app`; the relay starts and stops with it."""
    app[RELAY] = build_service(config, db)
    app.router.add_get(RELAY_PATH, derp, allow_head=False)
    for path in (f"{RELAY_PATH}/probe", RELAY_LATENCY_PATH):
        app.router.add_route("GET", path, probe)
        app.router.add_route("HEAD", path, probe)
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(_shutdown)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    await app[RELAY].start()
    yield
    await app[RELAY].stop()


async def _shutdown(app: web.Application) -> None:
    await app[RELAY].shutdown()


async def not_found(request: web.Request) -> web.StreamResponse:
    return web.json_response({"message": f"No relay endpoint {request.method} {request.path}.",
                              "detail": f"The relay serves {RELAY_PATH} and {RELAY_LATENCY_PATH} only."}, status=404)


def create_relay_app(config: ServerConfig, db: Database) -> web.Application:
    """The relay alone (`appliance relay serve`): the same routes the gateway mounts in embedded mode."""
    app = web.Application()
    init_app(app, config, db)
    app.router.add_route("*", r"/{path:[\s\S]*}", not_found)
    return app

