"""`appliance relay serve`'s own HTTP front: asyncio protocols and h11, without aiohttp (docs/adr/0034).

An installed relay holds one idle connection per workspace agent, so what each connection costs
is what the relay costs. This front reads one request head with h11, answers the probe paths,
refuses the rest as http.py does (upgrade.py holds the rule), and after the 101 hands the socket to
Relay.serve as a ByteConn: the raw DERP stream, or DERP inside WebSocket binary messages (RFC 6455
as a server needs it: masked client frames, fragments, ping, close). Embedded, the gateway's
aiohttp app mounts http.py instead; the relay core is the same.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import signal
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import h11

from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.db.migrate import require_current_schema
from appliance.errors import ConfigError
from appliance.relay import frames
from appliance.relay.inbox import Inbox, close_transport
from appliance.relay.service import RelayService, build_service
from appliance.relay.upgrade import PROBE_HEADERS, Refusal, derp_switch_headers, requested_upgrade
from appliance.sdk.relay_constants import RELAY_LATENCY_PATH, RELAY_PATH

log = logging.getLogger("appliance.relay")

SOCKET_MODE = 0o660  # owner and the appliance group, which nginx's workers are in
HEAD_BYTES = 16 << 10  # a request head larger than this is refused
HEAD_SECONDS = 10.0  # to send the request head
WRITE_HIGH_WATER = 256 << 10
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_MAX_MESSAGE = frames.MAX_FRAME_SIZE + frames.HEADER_LEN
PROBE_PATHS = frozenset({f"{RELAY_PATH}/probe", RELAY_LATENCY_PATH})


class Connection(asyncio.Protocol):
    """One client socket: an HTTP request head, then (after a 101) the ByteConn Relay.serve reads."""

    __slots__ = ("_head", "_inbox", "_service", "_tasks", "_timer", "_transport", "_write_waiter", "remote")

    def __init__(self, service: RelayService, tasks: set[asyncio.Task[None]]) -> None:
        self._service = service
        self._head: h11.Connection | None = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_BYTES)
        self._inbox: Inbox  # from connection_made, which asyncio calls before any other callback
        self._transport: asyncio.Transport | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks = tasks
        self.remote = ""

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._inbox = Inbox(transport)
        transport.set_write_buffer_limits(WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else "local"
        self._timer = asyncio.get_running_loop().call_later(HEAD_SECONDS, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._head is not None:
            self._read_head(data)
            return
        self._inbox.feed(data)

    def eof_received(self) -> bool:
        self._inbox.feed_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._inbox.feed_eof()
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_exception(ConnectionResetError("the connection is closed"))
        if self._timer is not None:
            self._timer.cancel()

    def pause_writing(self) -> None:
        self._write_waiter = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)
        self._write_waiter = None

    # --- the request head ---

    def _read_head(self, data: bytes) -> None:
        head = self._head
        assert head is not None
        try:
            head.receive_data(data)
            event = head.next_event()
        except h11.RemoteProtocolError as err:
            self._answer(Refusal(err.error_status_hint, f"bad request: {err}"))
            return
        if event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request):
            self._answer(Refusal(400, "bad request: expected a request head"))
            return
        self._route(event, head)

    def _route(self, request: h11.Request, head: h11.Connection) -> None:
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        method = request.method.decode("ascii", "replace")
        if path in PROBE_PATHS and method in ("GET", "HEAD"):
            self._answer(Refusal(200, "", PROBE_HEADERS), body=False)
        elif path != RELAY_PATH:
            body = json.dumps({"message": f"No relay endpoint {method} {path}.",
                               "detail": f"The relay serves {RELAY_PATH} and {RELAY_LATENCY_PATH} only."})
            self._answer(Refusal(404, body, {"Content-Type": "application/json"}))
        elif method != "GET":
            self._answer(Refusal(405, f"{RELAY_PATH} takes GET with an upgrade", {"Allow": "GET"}))
        else:
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
            wanted = requested_upgrade(headers, self._service.accept, self._service.stats)
            if isinstance(wanted, Refusal):
                self._answer(wanted)
            else:
                self._switch(wanted, headers, head)

    def _answer(self, answer: Refusal, body: bool = True) -> None:
        """A plain response, then close: the relay keeps no HTTP connection alive."""
        assert self._transport is not None
        payload = answer.text.encode() if body else b""
        lines = [f"HTTP/1.1 {answer.status} {_reason(answer.status)}", f"Content-Length: {len(payload)}",
                 "Connection: close", *(f"{k}: {v}" for k, v in answer.headers.items())]
        if body and "Content-Type" not in answer.headers:
            lines.append("Content-Type: text/plain; charset=utf-8")
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        self._head = None
        self._transport.close()

    def _switch(self, wanted: str, headers: dict[str, str], head: h11.Connection) -> None:
        assert self._transport is not None
        if wanted == "websocket":
            key = headers.get("sec-websocket-key", "").strip()
            if headers.get("sec-websocket-version", "").strip() != "13" or not key:
                self._answer(Refusal(400, "a WebSocket needs Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key"))
                return
            accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()  # noqa: S324 (RFC 6455)
            switch = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept,
                      "Sec-WebSocket-Protocol": "derp"}
        else:
            switch = derp_switch_headers(self._service.relay.key.public_hex)
        lines = ["HTTP/1.1 101 Switching Protocols", *(f"{k}: {v}" for k, v in switch.items())]
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        leftover, _ = head.trailing_data
        self._head = None
        if self._timer is not None:
            self._timer.cancel()
        self._inbox.feed(bytes(leftover))
        conn: Connection | WebSocketConn = WebSocketConn(self) if wanted == "websocket" else self
        task = asyncio.get_running_loop().create_task(self._service.relay.serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- ByteConn ---

    async def read_exactly(self, n: int) -> bytes:
        return await self._inbox.read_exactly(n)

    async def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        transport.write(data)
        if self._write_waiter is not None:
            await self._write_waiter

    async def close(self) -> None:
        close_transport(self._transport)
        self._inbox.feed_eof()


class WebSocketConn:
    """DERP's byte stream in binary WebSocket messages (the client masks, the server does not)."""

    __slots__ = ("_message", "_raw", "remote")

    def __init__(self, raw: Connection) -> None:
        self._raw = raw
        self._message = frames.Chunks()  # payload bytes of binary messages not read yet
        self.remote = raw.remote

    async def read_exactly(self, n: int) -> bytes:
        while self._message.size < n:
            await self._read_frame()
        return self._message.take(n)

    async def _read_frame(self) -> None:
        first, second = await self._raw.read_exactly(2)
        opcode, length = first & 0x0F, second & 0x7F
        if not second & 0x80:
            await self._fail(1002, "client frames must be masked")
        if length == 126:
            (length,) = struct.unpack("!H", await self._raw.read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._raw.read_exactly(8))
        if length > WS_MAX_MESSAGE:
            await self._fail(1009, f"a message larger than {WS_MAX_MESSAGE} bytes")
        mask = await self._raw.read_exactly(4)
        payload = _unmask(await self._raw.read_exactly(length), mask)
        if opcode in (0x0, 0x2):
            self._message.append(payload)
        elif opcode == 0x9:
            await self._raw.write(_ws_frame(0xA, payload))
        elif opcode == 0x8:
            await self._fail(1000, "")
        elif opcode != 0xA:
            await self._fail(1003, "DERP over WebSocket takes binary messages only")

    async def _fail(self, code: int, reason: str) -> None:
        await self._raw.write(_ws_frame(0x8, struct.pack("!H", code) + reason.encode()[:120]))
        await self._raw.close()
        raise ConnectionResetError(f"the WebSocket ended ({code} {reason})".strip())

    async def write(self, data: bytes) -> None:
        await self._raw.write(_ws_frame(0x2, data))

    async def close(self) -> None:
        transport = self._raw._transport
        if transport is not None and not transport.is_closing() and not transport.get_write_buffer_size():
            transport.write(_ws_frame(0x8, struct.pack("!H", 1001)))
        await self._raw.close()


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def _unmask(data: bytes, mask: bytes) -> bytes:
    """XOR with the repeating 4-byte mask, as one big-integer operation (C speed, no per-byte loop)."""
    if not data:
        return data
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def _reason(status: int) -> str:
    return {101: "Switching Protocols", 200: "OK", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 426: "Upgrade Required", 429: "Too Many Requests"}.get(status, "Error")


# --- the process ---

Listen = Callable[[Callable[[], "Connection"]], Awaitable[asyncio.Server]]


async def run(service: RelayService, listen: Listen, stop: asyncio.Event) -> None:
    """Start the service, listen, serve until `stop` is set, then stop gracefully."""
    tasks: set[asyncio.Task[None]] = set()
    await service.start()
    server = await listen(lambda: Connection(service, tasks))
    try:
        await stop.wait()
    finally:
        log.info("relay_stopping")
        server.close()
        await service.stop()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def serve(config: ServerConfig, socket_path: Path) -> None:
    """`appliance relay serve`: the relay on `socket_path` until SIGTERM or SIGINT."""
    db = Database(require_current_schema(config.postgres_url, "the relay"))
    socket_path.unlink(missing_ok=True)  # left behind by a process that was killed
    try:
        asyncio.run(_serve_unix(build_service(config, db), socket_path))
    finally:
        db.close()
        socket_path.unlink(missing_ok=True)


async def _serve_unix(service: RelayService, socket_path: Path) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def listen(factory: Callable[[], Connection]) -> asyncio.Server:
        try:
            server = await loop.create_unix_server(factory, str(socket_path), backlog=1024)
        except OSError as err:
            raise ConfigError(f"Cannot listen on {socket_path}: {err.strerror}.",
                              "Check that its folder exists and this user may write to it (--socket).") from err
        socket_path.chmod(SOCKET_MODE)  # noqa: ASYNC240 (one syscall, before anything can connect)
        log.info("relay_listening", extra={"socket": str(socket_path)})
        return server

    await run(service, listen, stop)
