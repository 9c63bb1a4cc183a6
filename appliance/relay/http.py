"""The relay on HTTP: /derp (`Upgrade: DERP` or the WebSocket fallback), /derp/probe and /derp/latency-check.

`init_app(app, config, db)` mounts the routes and owns the relay's lifetime on that application: the
server key (a 0600 file that survives restarts), admission following relay_peers, the counters'
writer, a once-a-second sweep, and Restarting to every client on graceful shutdown. The gateway
mounts it (one port in embedded mode); `appliance relay serve` runs it alone on a unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiohttp import WSMsgType, web
from nacl.public import PrivateKey

from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.relay import admission as admission_module
from appliance.relay import frames, stats
from appliance.relay.admission import Admission
from appliance.relay.keys import NodeKey
from appliance.relay.limits import TokenBucket, accept_limiter
from appliance.relay.server import Relay, RelaySettings
from appliance.sdk.relay_constants import RELAY_LATENCY_PATH, RELAY_PATH

log = logging.getLogger("appliance.relay")

KEY_FILE = "relay-node.key"  # under pki_dir: the relay's Curve25519 private key, hex, 0600
READ_HIGH_WATER = 1 << 20  # buffered input past which the socket stops being read (TCP backpressure)
READ_LOW_WATER = 256 << 10
ADMISSION_WAIT_SECONDS = 10.0  # how long start waits for the first read of relay_peers
SWEEP_SECONDS = 1.0
DRAIN_SECONDS = 2.0  # at shutdown, for the agents' disconnect times to reach the database
WS_CLOSE_SECONDS = 2.0
PROBE_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}


@dataclass
class RelayService:
    relay: Relay
    accept: TokenBucket
    stats: stats.RelayStats
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


RELAY = web.AppKey("relay", RelayService)


# --- the two byte connections ---

class RawConn:
    """The hijacked HTTP/1.1 socket after our 101: aiohttp feeds us its bytes as a payload parser."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.remote = request.remote or ""
        self._response = response
        self._transport = request.transport
        self._buffer = frames.Chunks()
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._paused = False

    # aiohttp's payload-parser interface (what WebSocketReader offers)
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._buffer.append(data)
        if self._buffer.size > READ_HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read_exactly(self, n: int) -> bytes:
        while self._buffer.size < n:
            if self._eof:
                raise ConnectionResetError("the peer closed the connection")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = self._buffer.take(n)
        if self._paused and self._buffer.size < READ_LOW_WATER and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        await self._response.write(data)

    async def close(self) -> None:
        if self._transport is not None:
            # Bytes still waiting mean the peer is not reading: a close would wait on it forever.
            if self._transport.get_write_buffer_size():
                self._transport.abort()
            else:
                self._transport.close()
        self.feed_eof()


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

def _tokens(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",") if part.strip()}


async def derp(request: web.Request) -> web.StreamResponse:
    service = request.app[RELAY]
    upgrade = request.headers.get("Upgrade", "").strip().lower()
    if upgrade not in ("derp", "websocket"):
        return web.Response(status=426, text="DERP requires connection upgrade",
                            headers={"Upgrade": "DERP", "Connection": "Upgrade"})
    if not service.accept.take_now():
        service.stats.refuse("accept_limit")
        return web.Response(status=429, text="the relay is accepting too many connections; retry in a second",
                            headers={"Retry-After": "1"})
    if upgrade == "websocket":
        return await _websocket(request, service)
    if "upgrade" not in _tokens(request.headers.get("Connection", "")):
        return web.Response(status=426, text="DERP requires connection upgrade (Connection: Upgrade)")
    response = web.StreamResponse(status=101, headers={
        "Upgrade": "DERP", "Connection": "Upgrade", "Derp-Version": str(frames.PROTOCOL_VERSION),
        "Derp-Public-Key": service.relay.key.public_hex})
    response.force_close()
    await response.prepare(request)
    conn = RawConn(request, response)
    # The same hand-over WebSocketResponse does: the rest of the socket's bytes go to our parser.
    request.protocol.set_parser(cast(Any, conn))
    request.protocol.keep_alive(False)
    await service.relay.serve(conn)
    return response


async def _websocket(request: web.Request, service: RelayService) -> web.StreamResponse:
    if "derp" not in _tokens(request.headers.get("Sec-WebSocket-Protocol", "")):
        return web.Response(status=400, text="a DERP WebSocket needs Sec-WebSocket-Protocol: derp")
    ws = web.WebSocketResponse(protocols=("derp",), compress=False, autoping=True,
                               max_msg_size=frames.MAX_FRAME_SIZE + frames.HEADER_LEN)
    await ws.prepare(request)
    await service.relay.serve(WebSocketConn(request, ws))
    return ws


async def probe(request: web.Request) -> web.StreamResponse:
    """/derp/probe and /derp/latency-check: an empty 200 any origin may time."""
    return web.Response(status=200, headers=PROBE_HEADERS)


# --- lifetime ---

def load_key(path: Path) -> NodeKey:
    """The relay's key pair from `path`, made (0600) on first start so it stays the same across restarts.

    Without a pki folder to keep it in (a test's configuration), the key lives as long as the process.
    """
    if path.exists():
        return NodeKey(PrivateKey(bytes.fromhex(path.read_text().strip())))
    key = NodeKey.generate()
    try:
        path.parent.mkdir(exist_ok=True, mode=0o700)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(bytes(key.private).hex() + "\n")
        temporary.replace(path)
    except OSError as err:
        log.warning("relay_key_not_persisted", extra={"path": str(path), "error": err.strerror})
    return key


def settings(config: ServerConfig) -> RelaySettings:
    return RelaySettings(rate_bytes_per_second=config.relay_rate_bytes_per_second,
                         rate_burst_bytes=config.relay_rate_burst_bytes)


def init_app(app: web.Application, config: ServerConfig, db: Database) -> None:
    """Mount the relay's routes on `app`; the relay starts and stops with it."""
    counters = stats.RelayStats(socket.gethostname())
    admission = Admission(fetch=admission_module.fetcher(db))
    relay = Relay(load_key(config.pki_dir / KEY_FILE), admission, settings(config), counters)
    app[RELAY] = RelayService(relay, accept_limiter(config.relay_accept_per_second, config.relay_accept_burst),
                              counters)
    app.router.add_get(RELAY_PATH, derp, allow_head=False)
    for path in (f"{RELAY_PATH}/probe", RELAY_LATENCY_PATH):
        app.router.add_route("GET", path, probe)
        app.router.add_route("HEAD", path, probe)
    app.cleanup_ctx.append(_lifetime(db))
    app.on_shutdown.append(_shutdown)


def _lifetime(db: Database) -> Any:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        service = app[RELAY]
        relay = service.relay
        loaded = asyncio.Event()
        await stats.close_orphans(db, service.stats.name)  # before the first write_stats moves updated_at
        service.tasks = [
            asyncio.create_task(admission_module.follow(db, relay.admission, loaded), name="relay-admission"),
            asyncio.create_task(stats.record_events(db, service.stats), name="relay-events"),
            asyncio.create_task(stats.write_stats(db, service.stats, service.stats.name, relay.gauges),
                                name="relay-stats"),
            asyncio.create_task(_sweep(relay), name="relay-sweep"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loaded.wait(), ADMISSION_WAIT_SECONDS)
        log.info("relay_started", extra={"server_key": relay.key.public_hex, "admitted": len(relay.admission.rows)})
        yield
        await _shutdown(app)
        for task in service.tasks:
            task.cancel()
        await asyncio.gather(*service.tasks, return_exceptions=True)

    return lifetime


async def _shutdown(app: web.Application) -> None:
    """Graceful stop: Restarting to every client, then the disconnects (agents' and clients') written."""
    service = app[RELAY]
    if service.relay.shutting_down:
        return
    await service.relay.shutdown()
    # Until every disconnect is written, not just taken off the queue (the write may still be under way).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(service.stats.events.join(), DRAIN_SECONDS)


async def not_found(request: web.Request) -> web.StreamResponse:
    return web.json_response({"message": f"No relay endpoint {request.method} {request.path}.",
                              "detail": f"The relay serves {RELAY_PATH} and {RELAY_LATENCY_PATH} only."}, status=404)


def create_relay_app(config: ServerConfig, db: Database) -> web.Application:
    """The relay alone (`appliance relay serve`): the same routes the gateway mounts in embedded mode."""
    app = web.Application()
    init_app(app, config, db)
    app.router.add_route("*", r"/{path:[\s\S]*}", not_found)
    return app


async def _sweep(relay: Relay) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        relay.sweep()
