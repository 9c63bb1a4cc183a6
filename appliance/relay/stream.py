"""Ordered byte streams over a DERP client: one per peer key, handed out as a connected socket for SSH.

DERP carries packets of at most 64 KiB between node keys. A stream chops what its socket reads into
packets, each with a 5-byte header, and writes what arrives, in order, into the peer's socket:

    kind(1) + sequence(4, big-endian)   then, for DATA, up to MAX_CHUNK bytes of the stream
    OPEN   the dialler's first packet: the other side's accept() returns a new stream
    DATA   the next bytes of the stream; sequence counts DATA packets per direction from 0
    EOF    the sender will write no more (its socket read end-of-file); the receiver shuts down writing
    RESET  the stream is gone (socket closed, broken, or a packet out of order); the receiver closes

Flow control is backpressure, never loss: a stream reads from its socket only after the relay took
the previous packet (DerpClient.send awaits drain), and incoming packets queue per stream while a
writer task waits for that socket to drain, so a slow reader never holds up another peer's packets.
What may queue for one stream is bounded by the SSH windows of the session on it; a peer that sends
past MAX_BUFFERED is reset. The relay forwards without dropping between paired peers (ADR 0023);
the sequence number turns a lost or reordered packet into a reset, never into corrupted bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from appliance.relay.client import DerpClient, Event, Packet, PeerGone, RelayClosed
from appliance.relay.frames import MAX_PACKET_SIZE

log = logging.getLogger(__name__)

HEADER = struct.Struct(">BI")
MAX_CHUNK = MAX_PACKET_SIZE - HEADER.size  # stream bytes per DATA packet
MAX_BUFFERED = 64 << 20  # received but not yet written into one socket; SSH's windows keep it far below
SOCKET_BUFFER = 1 << 20  # each socketpair end's kernel buffers, so a 64 KiB packet fits whole
PACKETS_PER_READ = 8  # one socket read becomes up to this many packets, sent to the relay in one write
WRITE_BATCH = 512 << 10  # received bytes joined into one socket write


class Kind(enum.IntEnum):
    OPEN = 1
    DATA = 2
    EOF = 3
    RESET = 4


def encode(kind: Kind, sequence: int, data: bytes | memoryview = b"") -> bytes:
    return HEADER.pack(kind, sequence & 0xFFFFFFFF) + data


class _Stream:
    """One peer's stream: our end of the socketpair, what waits to be written into it, its two pumps."""

    def __init__(self, peer: bytes) -> None:
        self.peer = peer
        self.inner, self.outer = socket.socketpair()
        for end in (self.inner, self.outer):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        self.inner.setblocking(False)
        self.pending: deque[memoryview | None] = deque()  # None: end of stream
        self.pending_bytes = 0
        self.ready = asyncio.Event()
        self.next_in = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.halves_done = 0  # each pump counts itself when its direction ended cleanly
        self.closed = False

    def push(self, data: memoryview | None) -> None:
        self.pending.append(data)
        self.pending_bytes += 0 if data is None else len(data)
        self.ready.set()

    def take_batch(self, limit: int) -> bytes | memoryview | None:
        """What waits, joined up to about `limit` bytes; None once the end of the stream is next."""
        parts: list[memoryview] = []
        size = 0
        while self.pending and self.pending[0] is not None and size < limit:
            data = self.pending.popleft()
            assert data is not None
            parts.append(data)
            size += len(data)
        if not parts:
            self.pending.popleft()
            return None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.inner.close()


class PeerStreams:
    """Owns client.recv(): one ordered byte stream per peer key, each as a connected socket."""

    def __init__(self, client: DerpClient, *, on_event: Callable[[Event], None] | None = None) -> None:
        # on_event sees what is not a stream packet (Restarting, Health, PeerGone), for status reporting.
        self._client = client
        self._on_event = on_event
        self._streams: dict[bytes, _Stream] = {}
        self._accepted: asyncio.Queue[tuple[bytes, socket.socket] | None] = asyncio.Queue()
        self._ended: RelayClosed | None = None

    async def connect(self, peer: bytes) -> socket.socket:
        """Client side: open a stream to the paired agent."""
        self._raise_if_ended()
        stream = self._start(peer)
        await self._client.send(peer, encode(Kind.OPEN, 0))
        return stream.outer

    async def accept(self) -> tuple[bytes, socket.socket]:
        """Agent side: the next stream a new client key opened; RelayClosed once the connection ended."""
        self._raise_if_ended()
        item = await self._accepted.get()
        if item is None:
            self._accepted.put_nowait(None)  # wake every other waiter too
            self._raise_if_ended()
            raise RelayClosed("the relay connection ended")
        return item

    async def run(self) -> None:
        """Pump packets into streams until the client closes; then close every stream and raise RelayClosed."""
        try:
            while True:
                self._dispatch(await self._client.recv())
        except RelayClosed as err:
            self._ended = err
            raise
        finally:
            if self._ended is None:
                self._ended = RelayClosed("the stream pump stopped")
            for stream in list(self._streams.values()):
                self._forget(stream)
            self._accepted.put_nowait(None)

    def _raise_if_ended(self) -> None:
        if self._ended is not None:
            raise self._ended

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Packet):
            self._on_packet(event.source, event.data)
            return
        if isinstance(event, PeerGone) and event.key in self._streams:
            log.info("stream_peer_gone peer=%s reason=%s", event.key.hex()[:16], event.reason.name)
            self._forget(self._streams[event.key])
        if self._on_event is not None:
            self._on_event(event)

    def _on_packet(self, peer: bytes, packet: bytes) -> None:
        if len(packet) < HEADER.size:
            return
        raw_kind, sequence = HEADER.unpack_from(packet)
        stream = self._streams.get(peer)
        if raw_kind == Kind.OPEN:
            self._accepted.put_nowait((peer, self._start(peer).outer))
        elif stream is None:
            if raw_kind in (Kind.DATA, Kind.EOF):
                self._reset_later(peer, "no such stream")
        elif raw_kind == Kind.RESET:
            self._forget(stream)
        elif raw_kind in (Kind.DATA, Kind.EOF):
            self._on_data(stream, Kind(raw_kind), sequence, memoryview(packet)[HEADER.size:])

    def _on_data(self, stream: _Stream, kind: Kind, sequence: int, data: memoryview) -> None:
        if sequence != stream.next_in & 0xFFFFFFFF:
            self._abort(stream, f"packet {sequence} arrived where {stream.next_in} was due")
        elif stream.pending_bytes + len(data) > MAX_BUFFERED:
            self._abort(stream, f"peer sent more than {MAX_BUFFERED} bytes the socket has not taken")
        elif kind == Kind.DATA:
            stream.next_in += 1
            stream.push(data)
        else:
            stream.push(None)

    def _start(self, peer: bytes) -> _Stream:
        if (old := self._streams.get(peer)) is not None:
            self._forget(old)  # a peer has one stream; a new one replaces it
        stream = _Stream(peer)
        self._streams[peer] = stream
        stream.tasks = [asyncio.create_task(self._pump_out(stream)), asyncio.create_task(self._pump_in(stream))]
        return stream

    def _forget(self, stream: _Stream) -> None:
        stream.close()
        if self._streams.get(stream.peer) is stream:
            del self._streams[stream.peer]

    def _half_done(self, stream: _Stream) -> None:
        stream.halves_done += 1
        if stream.halves_done == 2:
            self._forget(stream)

    def _abort(self, stream: _Stream, why: str) -> None:
        log.warning("stream_reset peer=%s why=%s", stream.peer.hex()[:16], why)
        self._forget(stream)
        self._reset_later(stream.peer, why)

    def _reset_later(self, peer: bytes, why: str) -> None:
        async def reset() -> None:
            with contextlib.suppress(RelayClosed, OSError):
                await self._client.send(peer, encode(Kind.RESET, 0, why.encode()[:200]))
        _background(reset())

    async def _pump_out(self, stream: _Stream) -> None:
        """Socket -> relay: read only after the relay took what was read before."""
        loop = asyncio.get_running_loop()
        sequence = 0
        try:
            while chunk := await loop.sock_recv(stream.inner, PACKETS_PER_READ * MAX_CHUNK):
                view = memoryview(chunk)
                packets = [encode(Kind.DATA, sequence + i, view[start:start + MAX_CHUNK])
                           for i, start in enumerate(range(0, len(chunk), MAX_CHUNK))]
                await self._client.send_many(stream.peer, packets)
                sequence += len(packets)
            await self._client.send(stream.peer, encode(Kind.EOF, sequence))
            self._half_done(stream)
        except OSError as err:
            self._abort(stream, f"socket: {err}")
        except RelayClosed:
            self._forget(stream)

    async def _pump_in(self, stream: _Stream) -> None:
        """Relay -> socket: write in order, waiting for the socket to drain; EOF shuts down our writing."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await stream.ready.wait()
                while stream.pending:
                    if (batch := stream.take_batch(WRITE_BATCH)) is None:
                        stream.inner.shutdown(socket.SHUT_WR)
                        self._half_done(stream)
                        return
                    await loop.sock_sendall(stream.inner, batch)
                    stream.pending_bytes -= len(batch)
                stream.ready.clear()
        except OSError as err:
            self._abort(stream, f"socket: {err}")


_tasks: set[asyncio.Task[None]] = set()


def _background(coro: Coroutine[Any, Any, None]) -> None:
    """Run a fire-and-forget send, keeping a reference so the task is not collected mid-flight."""
    task = asyncio.create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
