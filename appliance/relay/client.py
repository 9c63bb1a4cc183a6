"""The DERP client the agent and the CLI dial the relay with: `Upgrade: DERP` first, then the WebSocket fallback.

A reader task owns the connection's input: it answers the relay's Pings, resolves our own, skips
KeepAlives and queues everything else as an Event for `recv()`. Its queue is bounded, so a caller
that stops reading stops the reader too and the relay feels TCP backpressure instead of losing data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl as ssl_module
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import h11

from appliance.relay import frames
from appliance.relay.frames import Frame, FrameError, FrameType, PeerGoneReason
from appliance.relay.keys import NodeKey, SealError
from appliance.relay.limits import TokenBucket

EVENT_QUEUE = 64  # events read ahead of recv(); past it the reader stops reading the socket
MAX_RESPONSE_HEAD = 64 << 10
USER_AGENT = "appliance-derp-client"
READ_CHUNK = 256 << 10


@dataclass(frozen=True)
class Packet:
    source: bytes
    data: bytes


@dataclass(frozen=True)
class PeerGone:
    key: bytes
    reason: PeerGoneReason


@dataclass(frozen=True)
class Restarting:
    reconnect_in: float  # seconds
    try_for: float  # seconds


@dataclass(frozen=True)
class Health:
    problem: str


Event = Packet | PeerGone | Restarting | Health


class RelayClosed(Exception):
    """The connection ended; `reason` is what the relay said (a Health frame), if it said anything."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RelayRefused(RelayClosed):
    """Closed during the handshake: the relay did not admit this key (or refused the connection)."""


class _Transport:
    """A byte stream both ways: raw frames over an upgraded socket, or binary WebSocket messages."""

    async def read_exactly(self, n: int) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _SocketTransport(_Transport):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self._reader, self._writer = reader, writer
        self._buffer = frames.Chunks()
        self._buffer.append(head)

    async def read_exactly(self, n: int) -> bytes:
        while self._buffer.size < n:  # reads only what a frame needs: the reader's limit is the backpressure
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise ConnectionError("the relay closed the connection")
            self._buffer.append(data)
        return self._buffer.take(n)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl_module.SSLError):
            await self._writer.wait_closed()


class _WebSocketTransport(_Transport):
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session, self._ws = session, ws
        self._buffer = frames.Chunks()

    async def read_exactly(self, n: int) -> bytes:
        while self._buffer.size < n:
            message = await self._ws.receive()
            if message.type != aiohttp.WSMsgType.BINARY:
                raise ConnectionError("the relay closed the WebSocket")
            self._buffer.append(message.data)
        return self._buffer.take(n)

    async def write(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self) -> None:
        await self._ws.close()
        await self._session.close()


class DerpClient:
    """One admitted connection to the relay, as `connect()` returns it."""

    def __init__(self, transport: _Transport, server_key: bytes, bucket: TokenBucket) -> None:
        self.server_key = server_key
        self._transport = transport
        self._bucket = bucket
        self._write_lock = asyncio.Lock()
        self._events: asyncio.Queue[Event | RelayClosed] = asyncio.Queue(EVENT_QUEUE)
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self._problem = ""
        self._closed: RelayClosed | None = None
        self._reader = asyncio.create_task(self._read_loop(), name="derp-client-reader")

    async def send(self, destination: bytes, packet: bytes) -> None:
        """Send one packet (<= 64 KiB) to a peer key; returns once the relay's socket took it."""
        frame = frames.send_packet(destination, packet)
        await self._bucket.take(len(frame))
        await self._write(frame)

    async def send_many(self, destination: bytes, packets: Sequence[bytes]) -> None:
        """Send packets (each <= 64 KiB) to one peer in one write; returns once the relay's socket took them."""
        parts: list[bytes] = []
        for packet in packets:
            parts += (frames.send_packet_head(destination, len(packet)), packet)
        batch = b"".join(parts)
        await self._bucket.take(len(batch))
        await self._write(batch)

    async def recv(self) -> Event:
        """The next event; raises RelayClosed once the connection ended and every event was read."""
        event = await self._events.get()
        if isinstance(event, RelayClosed):
            self._closed = event
            self._events.put_nowait(event)  # every later recv() raises it too
            raise event
        return event

    async def ping(self, timeout: float = 5.0) -> float:  # noqa: ASYNC109 (the contract's signature)
        """A round trip to the relay and back, in seconds."""
        data = os.urandom(frames.PING_LEN)
        answered = asyncio.get_running_loop().create_future()
        self._pings[data] = answered
        started = time.perf_counter()
        try:
            await self._write(frames.ping(data))
            await asyncio.wait_for(answered, timeout)
        finally:
            self._pings.pop(data, None)
        return time.perf_counter() - started

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(OSError, aiohttp.ClientError, ssl_module.SSLError):
            await self._transport.close()

    async def _write(self, data: bytes) -> None:
        if self._closed is not None:
            raise self._closed
        async with self._write_lock:
            try:
                await self._transport.write(data)
            except (OSError, aiohttp.ClientError, RuntimeError) as err:
                raise RelayClosed(self._problem or f"the connection to the relay broke: {err}") from err

    async def _read_loop(self) -> None:
        try:
            while True:
                await self._handle(await frames.read_known_frame(self._transport.read_exactly))
        except asyncio.CancelledError:
            self._finish(RelayClosed("closed by this client"))
            with contextlib.suppress(asyncio.QueueFull):  # whoever still calls recv() learns it closed
                self._events.put_nowait(self._closed or RelayClosed("closed"))
            raise
        except FrameError as err:
            self._finish(RelayClosed(f"the relay sent a bad frame: {err}"))
        except (OSError, aiohttp.ClientError, RuntimeError) as err:
            self._finish(RelayClosed(self._problem or f"the relay closed the connection ({err})"))
        await self._events.put(self._closed or RelayClosed("closed"))  # after every event already read

    def _finish(self, closed: RelayClosed) -> None:
        self._closed = closed
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(closed)

    async def _handle(self, frame: Frame) -> None:
        event: Event | None = None
        match frame.type:
            case FrameType.RECV_PACKET:
                source, data = frames.parse_recv_packet(frame.payload)
                event = Packet(source, data)
            case FrameType.PING:
                await self._write(frames.pong(frames.parse_ping(frame.payload)))
            case FrameType.PONG:
                if (waiter := self._pings.get(frame.payload[:frames.PING_LEN])) is not None and not waiter.done():
                    waiter.set_result(None)
            case FrameType.PEER_GONE:
                key, reason = frames.parse_peer_gone(frame.payload)
                event = PeerGone(key, reason)
            case FrameType.HEALTH:
                self._problem = frame.payload.decode(errors="replace")
                event = Health(self._problem)
            case FrameType.RESTARTING:
                reconnect_in, try_for = frames.parse_restarting(frame.payload)
                event = Restarting(reconnect_in / 1000, try_for / 1000)
            case _:  # KeepAlive, PeerPresent, and frames meant for the relay: nothing to tell
                pass
        if event is not None:
            await self._events.put(event)


async def connect(url: str, key: NodeKey, *, ssl: ssl_module.SSLContext | None = None, websocket: bool = False,
                  timeout: float = 10.0) -> DerpClient:  # noqa: ASYNC109 (the contract's signature)
    """Dial http(s)://host:port/derp, prove `key` and be admitted; RelayRefused when the relay says no."""
    async with asyncio.timeout(timeout):
        transport = await (_dial_websocket(url, ssl) if websocket else _dial(url, ssl))
        try:
            server_key, bucket = await _handshake(transport, key)
        except BaseException:
            with contextlib.suppress(Exception):
                await transport.close()
            raise
    return DerpClient(transport, server_key, bucket)


async def _dial(url: str, ssl: ssl_module.SSLContext | None) -> _Transport:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a relay URL is http(s)://host[:port]/derp, not {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context = (ssl or ssl_module.create_default_context()) if secure else None
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context, limit=READ_CHUNK)
    try:
        status, body, head = await _upgrade(reader, writer, parts.netloc, parts.path or "/derp")
    except BaseException:
        writer.close()
        raise
    if status == 101:
        return _SocketTransport(reader, writer, head)
    writer.close()
    if 400 <= status < 500 and status != 429:  # a front that cannot pass `Upgrade: DERP`: try WebSocket
        return await _dial_websocket(url, ssl)
    raise RelayRefused(f"the relay answered HTTP {status}: {_message(body)}")


async def _upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                   path: str) -> tuple[int, bytes, bytes]:
    """Send the Upgrade request; (status, body, bytes after the 101 head)."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
    writer.write(conn.send(h11.Request(method="GET", target=path, headers=[
        ("Host", host), ("Upgrade", "DERP"), ("Connection", "Upgrade"), ("User-Agent", USER_AGENT)])))
    await writer.drain()
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(READ_CHUNK)
            conn.receive_data(data)
            if not data and conn.their_state is not h11.SWITCHED_PROTOCOL:
                break
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            return 101, b"", conn.trailing_data[0]
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.PAUSED:
            break
    return status, body, b""


def _message(body: bytes) -> str:
    """The API's {"message", "detail"} as one line, or the text the front answered."""
    try:
        data = json.loads(body)
        return f"{data['message']} {data.get('detail', '')}".strip()
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:200] or "no reason given"


async def _dial_websocket(url: str, ssl: ssl_module.SSLContext | None) -> _Transport:
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url, protocols=("derp",), ssl=ssl if ssl is not None else True,
                                      autoping=True, max_msg_size=frames.MAX_FRAME_SIZE + frames.HEADER_LEN,
                                      compress=0)
    except aiohttp.WSServerHandshakeError as err:
        await session.close()
        raise RelayRefused(f"the relay refused the WebSocket: HTTP {err.status} {err.message}") from err
    except BaseException:
        await session.close()
        raise
    return _WebSocketTransport(session, ws)


async def _handshake(transport: _Transport, key: NodeKey) -> tuple[bytes, TokenBucket]:
    """ServerKey, our sealed ClientInfo, then the relay's ServerInfo (or a Health saying why not)."""
    problem = ""
    try:
        first = await frames.read_known_frame(transport.read_exactly)
        if first.type is not FrameType.SERVER_KEY:
            raise RelayRefused(f"the relay sent {first.type.name} instead of ServerKey")
        server_key = frames.parse_server_key(first.payload)
        await transport.write(frames.client_info(key.public, key.seal_to(server_key, frames.client_info_json())))
        while True:
            frame = await frames.read_known_frame(transport.read_exactly)
            if frame.type is FrameType.HEALTH:
                problem = frame.payload.decode(errors="replace")
            elif frame.type is FrameType.SERVER_INFO:
                break
        info = json.loads(key.open_from(server_key, frame.payload))
    except (OSError, aiohttp.ClientError, RuntimeError) as err:
        raise RelayRefused(problem or f"the relay closed the connection during the handshake ({err})") from err
    except (FrameError, SealError, ValueError) as err:
        raise RelayRefused(f"the relay's handshake is not DERP: {err}") from err
    rate = int(info.get("TokenBucketBytesPerSecond", 0) or 0)
    return server_key, TokenBucket(float(rate), float(info.get("TokenBucketBytesBurst", 0) or 0))

