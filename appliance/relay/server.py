"""The relay core: DERP's handshake, admission and forwarding over any byte connection.

`Relay.serve(conn)` runs one client from the ServerKey to the close, over a ByteConn (the hijacked
HTTP/1.1 socket or a WebSocket, http.py). Differences from derper, on purpose:
- only keys the control plane vouched for are admitted (admission.py), and a packet is forwarded
  only between an agent and a client paired to it; anything else is dropped and counted;
- no loss between paired peers: a destination's queue is bounded and, when it is full, the sender's
  read loop waits (its TCP window closes) instead of dropping; a destination whose socket has not
  taken a write for STALL_SECONDS is closed as dead, which frees its senders;
- every offender is told why in a Health frame before its connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

from appliance.relay import frames
from appliance.relay.admission import Admission, PeerRow
from appliance.relay.frames import FrameError, FrameType, PeerGoneReason
from appliance.relay.keys import NodeKey, SealError
from appliance.relay.limits import TokenBucket, receive_bucket

log = logging.getLogger("appliance.relay")

HANDSHAKE_SECONDS = 10.0  # one deadline for writing ServerKey and reading ClientInfo (derper's)
KEEP_ALIVE_JITTER = 5.0
QUEUE_FRAMES = 128  # packets waiting for one destination before its senders wait (Coder raised derper's 32)
STALL_SECONDS = 30.0  # a destination whose socket took nothing for this long is dead
CONTROL_QUEUE = 64  # pongs and notices waiting; past it a pong is dropped (derper's rule)
WRITE_BATCH = 256 << 10  # queued frames joined into one write
CLOSE_FLUSH_SECONDS = 1.0  # how long a closing connection's last Health may take to leave
ENQUEUE_CHECK_SECONDS = 1.0
FLOOD_WINDOW_SECONDS = 10.0
FLOOD_FRAMES = 2000  # frames that deliver nothing (drops, pings, unknown types) per window before a close
DISCO_GONE_RATE, DISCO_GONE_BURST = 1.0, 3.0  # PeerGone(not here) answers per second (derper's)
RESTART_RECONNECT_SECONDS = 2.0
RESTART_TRY_FOR_SECONDS = 120.0


class ByteConn(Protocol):
    """A connection's two byte streams, whatever carries them."""

    remote: str

    async def read_exactly(self, n: int) -> bytes: ...  # raises ConnectionError at the end

    async def write(self, data: bytes) -> None: ...  # returns once the transport took it (drained)

    async def close(self) -> None: ...


class Counters(Protocol):
    def add(self, name: str, amount: int = 1) -> None: ...

    def drop(self, reason: str, amount: int = 1) -> None: ...

    def refuse(self, reason: str) -> None: ...

    def agent_connected(self, agent_id: str) -> None: ...

    def agent_disconnected(self, agent_id: str) -> None: ...


class NoCounters:
    """Counters that count nothing (a relay in a unit test)."""

    def add(self, name: str, amount: int = 1) -> None:
        pass

    def drop(self, reason: str, amount: int = 1) -> None:
        pass

    def refuse(self, reason: str) -> None:
        pass

    def agent_connected(self, agent_id: str) -> None:
        pass

    def agent_disconnected(self, agent_id: str) -> None:
        pass


class Refused(Exception):
    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter, self.reason = counter, reason


class Offence(Exception):
    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter, self.reason = counter, reason


@dataclass(frozen=True)
class RelaySettings:
    rate_bytes_per_second: int = 0
    rate_burst_bytes: int = 0
    handshake_seconds: float = HANDSHAKE_SECONDS
    keep_alive_seconds: float = frames.KEEP_ALIVE_SECONDS
    stall_seconds: float = STALL_SECONDS
    queue_frames: int = QUEUE_FRAMES


class Flag:
    """asyncio.Event's set/clear/wait at a fraction of its memory: waiters are listed only while there are any.

    A relay holds three per connection, so with a thousand idle agents the Events' deques alone cost megabytes.
    """

    __slots__ = ("_on", "_waiters")

    def __init__(self) -> None:
        self._on = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._on

    def set(self) -> None:
        self._on = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._on = False

    async def wait(self) -> None:
        if self._on:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:  # cancelled (a wait_for that timed out)
                self._waiters.remove(waiter)


@dataclass(eq=False, slots=True)
class Peer:
    """One admitted connection: its key, its row at admission, and what waits to be written to it."""

    key: bytes
    row: PeerRow
    conn: ByteConn
    bucket: TokenBucket
    # Lists, not deques: an empty deque costs 760 bytes per connection, and these stay short
    # (at most queue_frames and CONTROL_QUEUE entries), so taking from the front is cheap.
    data: list[tuple[bytes, memoryview]] = field(default_factory=list)  # RecvPackets, in parts (frames.relayed)
    control: list[bytes] = field(default_factory=list)
    wake: Flag = field(default_factory=Flag)
    space: Flag = field(default_factory=Flag)
    closing: str = ""  # the reason, once it is closing
    write_started: float = 0.0  # monotonic start of the write under way, 0 when none
    preferred: bool = False
    disco_gone: TokenBucket = field(default_factory=lambda: TokenBucket(DISCO_GONE_RATE, DISCO_GONE_BURST))
    idle_frames: int = 0
    idle_window: float = field(default_factory=time.monotonic)
    finished: Flag = field(default_factory=Flag)  # set once the connection is gone
    keep_alive: asyncio.TimerHandle | None = None  # the next KeepAlive (a timer, not a task per connection)

    def push_control(self, frame: bytes) -> None:
        self.control.append(frame)
        self.wake.set()


class Relay:
    """Every admitted connection of this process, keyed by node key."""

    def __init__(self, key: NodeKey, admission: Admission, settings: RelaySettings | None = None,
                 counters: Counters | None = None) -> None:
        self.key = key
        self.admission = admission
        self.settings = settings or RelaySettings()
        self.counters: Counters = counters or NoCounters()
        self.peers: dict[bytes, Peer] = {}
        self.by_agent: dict[str, set[Peer]] = {}
        self.connections = 0  # sockets being served, handshaking ones included
        self.shutting_down = False
        admission.on_revoke = self.revoke

    # --- gauges ---

    def gauges(self) -> dict[str, int]:
        agents = sum(1 for p in self.peers.values() if p.row.kind == "agent")
        return {"connections": self.connections, "peers": len(self.peers), "agents": agents,
                "clients": len(self.peers) - agents}

    # --- one connection ---

    async def serve(self, conn: ByteConn) -> None:
        """Run one connection to its end; never raises for anything the peer did."""
        self.connections += 1
        self.counters.add("accepts")
        try:
            peer = await self._admit(conn)
            if peer is not None:
                await self._run(peer)
        finally:
            self.connections -= 1

    async def _admit(self, conn: ByteConn) -> Peer | None:
        if self.shutting_down:
            await self._refuse(conn, "shutting_down", "the relay is restarting; reconnect in a moment")
            return None
        try:
            async with asyncio.timeout(self.settings.handshake_seconds):
                key, row = await self._handshake(conn)
        except TimeoutError:
            await self._refuse(conn, "handshake_timeout",
                               f"handshake not completed within {self.settings.handshake_seconds:g} s")
            return None
        except Refused as refusal:
            await self._refuse(conn, refusal.counter, refusal.reason)
            return None
        except (ConnectionError, asyncio.IncompleteReadError):
            self.counters.refuse("handshake_disconnected")
            await _quietly_close(conn)
            return None
        peer = Peer(key, row, conn, receive_bucket(self.settings.rate_bytes_per_second,
                                                   self.settings.rate_burst_bytes))
        self._register(peer)  # only then ServerInfo (derper's order)
        info = frames.server_info_json(bytes_per_second=self.settings.rate_bytes_per_second,
                                       burst=int(peer.bucket.burst))
        peer.push_control(frames.server_info(self.key.seal_to(key, info)))
        return peer

    async def _handshake(self, conn: ByteConn) -> tuple[bytes, PeerRow]:
        await conn.write(frames.server_key(self.key.public))
        try:
            frame = await frames.read_frame(conn.read_exactly)
        except FrameError as err:
            raise Refused("bad_client_info", f"protocol error: {err}") from err
        if frame.type is not FrameType.CLIENT_INFO:
            raise Refused("bad_client_info", f"protocol error: expected ClientInfo, got {frame.type.name}")
        try:
            key, sealed = frames.parse_client_info(frame.payload)
            info = json.loads(self.key.open_from(key, sealed))
        except (FrameError, SealError) as err:
            raise Refused("bad_client_info", f"ClientInfo does not open with the key it claims: {err}") from err
        except ValueError as err:
            raise Refused("bad_client_info", f"ClientInfo is not JSON: {err}") from err
        if not isinstance(info, dict):
            raise Refused("bad_client_info", "ClientInfo is not a JSON object")
        if (reason := await self.admission.admit(key)) is not None:
            raise Refused("not_admitted", reason)
        row = self.admission.lookup(key)
        assert row is not None  # refusal() said it is admitted
        return key, row

    async def _refuse(self, conn: ByteConn, counter: str, reason: str) -> None:
        self.counters.refuse(counter)
        log.info("relay_refused", extra={"remote": conn.remote, "reason": reason})
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                await conn.write(frames.health(reason))
        await _quietly_close(conn)

    async def _run(self, peer: Peer) -> None:
        writer = asyncio.create_task(self._write_loop(peer))
        self._schedule_keep_alive(peer)
        try:
            await self._read_loop(peer)
        except Offence as offence:
            self.counters.refuse(offence.counter)
            self.close_peer(peer, offence.reason)
        except FrameError as err:
            self.counters.refuse("protocol_error")
            self.close_peer(peer, f"protocol error: {err}")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._unregister(peer)
            if not peer.closing:
                self.close_peer(peer, "")
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), CLOSE_FLUSH_SECONDS)
            writer.cancel()
            if peer.keep_alive is not None:
                peer.keep_alive.cancel()
            await _quietly_close(peer.conn)
            peer.finished.set()

    async def _read_loop(self, peer: Peer) -> None:
        read = peer.conn.read_exactly
        while not peer.closing:
            kind, length = frames.parse_any_header(await read(frames.HEADER_LEN))
            if not peer.bucket.unlimited:  # before the payload: TCP does the throttling
                await peer.bucket.take(frames.HEADER_LEN + length)
            if kind is None:
                await frames.skip(read, length)
                self._idle(peer)
                continue
            payload = await read(length) if length else b""
            self.counters.add("bytes_in", frames.HEADER_LEN + length)
            await self._handle(peer, kind, payload)

    async def _handle(self, peer: Peer, kind: FrameType, payload: bytes) -> None:
        match kind:
            case FrameType.SEND_PACKET:
                await self._forward(peer, payload)
            case FrameType.PING:
                self.counters.add("got_ping")
                self._idle(peer)
                if len(peer.control) < CONTROL_QUEUE:
                    peer.push_control(frames.pong(frames.parse_ping(payload)))
                    self.counters.add("sent_pong")
            case FrameType.NOTE_PREFERRED:
                peer.preferred = frames.parse_note_preferred(payload)
                self._idle(peer)
            case FrameType.FORWARD_PACKET | FrameType.WATCH_CONNS | FrameType.CLOSE_PEER:
                raise Offence("mesh_frame", f"{kind.name} needs a mesh key; this relay has no mesh")
            case _:  # a frame only a server sends: ignored, as derper ignores what it does not handle
                self._idle(peer)

    def _idle(self, peer: Peer) -> None:
        """Count a frame that delivered nothing; too many of them in a window is a flood."""
        now = time.monotonic()
        if now - peer.idle_window > FLOOD_WINDOW_SECONDS:
            peer.idle_window, peer.idle_frames = now, 0
        peer.idle_frames += 1
        if peer.idle_frames > FLOOD_FRAMES:
            raise Offence("flood", f"flood: more than {FLOOD_FRAMES} frames that deliver nothing within "
                                   f"{FLOOD_WINDOW_SECONDS:g} s (pings, or packets to keys this connection "
                                   "is not paired with)")

    # --- forwarding ---

    async def _forward(self, source: Peer, payload: bytes) -> None:
        """`payload` is a SendPacket's: the destination key, then the packet."""
        destination, _ = frames.parse_send_packet(payload[:frames.KEY_LEN])  # checks the length only
        self.counters.add("packets_in")
        if not self.admission.paired(source.key, destination):
            reason = "unpaired" if destination in self.admission.rows else "unknown_destination"
            self._drop(source, destination, payload, reason)
            return
        target = self.peers.get(destination)
        if target is None or target.closing:
            self._drop(source, destination, payload, "not_here")
            return
        if not await self._enqueue(source, target, frames.relayed(source.key, payload)):
            self.counters.drop("destination_closed")

    def _drop(self, source: Peer, destination: bytes, payload: bytes, reason: str) -> None:
        self.counters.drop(reason)
        self._idle(source)
        if frames.is_disco(payload, frames.KEY_LEN) and source.disco_gone.take_now():
            source.push_control(frames.peer_gone(destination, PeerGoneReason.NOT_HERE))
            self.counters.add("peer_gone_not_here_frames")

    async def _enqueue(self, source: Peer, target: Peer, frame: tuple[bytes, memoryview]) -> bool:
        """Queue for `target`, waiting while its queue is full; False when either closed meanwhile."""
        while len(target.data) >= self.settings.queue_frames and not target.closing and not source.closing:
            target.space.clear()
            with contextlib.suppress(TimeoutError):  # wake now and then: the sender itself may be closed
                await asyncio.wait_for(target.space.wait(), ENQUEUE_CHECK_SECONDS)
        if target.closing or source.closing:
            return False
        target.data.append(frame)
        target.wake.set()
        return True

    async def _write_loop(self, peer: Peer) -> None:
        conn = peer.conn
        try:
            while True:
                chunk = self._next_writes(peer)
                if not chunk:
                    if peer.closing:  # the last Health left: close now rather than when the timer fires
                        await _quietly_close(conn)
                        return
                    peer.wake.clear()
                    await peer.wake.wait()
                    continue
                peer.write_started = time.monotonic()
                await conn.write(chunk)
                peer.write_started = 0.0
                self.counters.add("bytes_out", len(chunk))
        except (ConnectionError, RuntimeError, OSError):
            self.close_peer(peer, peer.closing or "connection lost")

    def _next_writes(self, peer: Peer) -> bytes:
        """Control frames first, then queued packets, joined up to WRITE_BATCH bytes."""
        parts: list[bytes | memoryview] = []
        size = 0
        while peer.control and size < WRITE_BATCH:
            size += len(part := peer.control.pop(0))
            parts.append(part)
        packets = 0
        while peer.data and size < WRITE_BATCH and not peer.closing:
            head, packet = peer.data.pop(0)
            parts += (head, packet)
            size += len(head) + len(packet)
            packets += 1
        if packets:
            self.counters.add("packets_out", packets)
            peer.space.set()
        return b"".join(parts)

    def _schedule_keep_alive(self, peer: Peer) -> None:
        delay = self.settings.keep_alive_seconds + random.uniform(0, KEEP_ALIVE_JITTER)  # noqa: S311
        peer.keep_alive = asyncio.get_running_loop().call_later(delay, self._keep_alive, peer)

    def _keep_alive(self, peer: Peer) -> None:
        if not peer.closing:
            peer.push_control(frames.keep_alive())
            self._schedule_keep_alive(peer)

    # --- the set of connections ---

    def _register(self, peer: Peer) -> None:
        old = self.peers.get(peer.key)
        self.peers[peer.key] = peer
        self.by_agent.setdefault(peer.row.agent_id, set()).add(peer)
        if old is not None:
            self._forget(old)
            self.close_peer(old, "replaced: a newer connection with the same key connected")
        elif peer.row.kind == "agent":
            self.counters.agent_connected(peer.row.agent_id)
        log.info("relay_connected", extra={"remote": peer.conn.remote, "kind": peer.row.kind,
                                           "agent_id": peer.row.agent_id, "key": peer.key.hex()[:16]})

    def _forget(self, peer: Peer) -> None:
        group = self.by_agent.get(peer.row.agent_id)
        if group is not None:
            group.discard(peer)
            if not group:
                del self.by_agent[peer.row.agent_id]

    def _unregister(self, peer: Peer) -> None:
        if self.peers.get(peer.key) is not peer:
            return  # replaced by a newer connection with the same key: nobody is told it left
        del self.peers[peer.key]
        self._forget(peer)
        if peer.row.kind == "agent":
            self.counters.agent_disconnected(peer.row.agent_id)
        for other in self.paired_peers(peer):
            other.push_control(frames.peer_gone(peer.key, PeerGoneReason.DISCONNECTED))
            self.counters.add("peer_gone_disconnected_frames")
        log.info("relay_disconnected", extra={"remote": peer.conn.remote, "kind": peer.row.kind,
                                              "agent_id": peer.row.agent_id, "reason": peer.closing})

    def paired_peers(self, peer: Peer) -> list[Peer]:
        return [p for p in self.by_agent.get(peer.row.agent_id, ()) if p.row.kind != peer.row.kind]

    def close_peer(self, peer: Peer, reason: str) -> None:
        """Close with `reason` in a last Health frame; its queued packets are dropped, its senders freed."""
        if peer.closing:
            return
        peer.closing = reason or "closed"
        if peer.data:
            self.counters.drop("destination_closed", len(peer.data))
            peer.data.clear()
        peer.space.set()
        if reason:
            log.info("relay_closing", extra={"remote": peer.conn.remote, "reason": reason})
            peer.push_control(frames.health(reason))
        peer.wake.set()
        asyncio.get_running_loop().call_later(CLOSE_FLUSH_SECONDS, _close_soon, peer)

    def revoke(self, key: bytes, reason: str) -> None:
        """Admission dropped `key`: close its connection now."""
        if (peer := self.peers.get(key)) is not None:
            self.counters.refuse("revoked")
            self.close_peer(peer, reason)

    def sweep(self) -> None:
        """Once a second: close connections whose admission expired, and destinations that stopped reading."""
        now = time.monotonic()
        for peer in list(self.peers.values()):
            if self.admission.lookup(peer.key) is None:
                self.counters.refuse("expired")
                self.close_peer(peer, "access expired: the control plane's vouching for this key ran out; pair again")
            elif peer.write_started and now - peer.write_started > self.settings.stall_seconds:
                self.counters.drop("stalled_destination")
                self.close_peer(peer, f"not reading: nothing was read from this connection for "
                                      f"{self.settings.stall_seconds:g} s while packets waited")

    async def shutdown(self, reconnect_in: float = RESTART_RECONNECT_SECONDS,
                       try_for: float = RESTART_TRY_FOR_SECONDS) -> None:
        """Tell every client to come back (Restarting), give the frames a moment to leave, then close all."""
        self.shutting_down = True
        frame = frames.restarting(int(reconnect_in * 1000), int(try_for * 1000))
        peers = list(self.peers.values())
        for peer in peers:
            peer.push_control(frame)
            self.close_peer(peer, "")  # its writer sends what is queued (Restarting), then closes
        if peers:
            await asyncio.wait([asyncio.create_task(p.finished.wait()) for p in peers], timeout=CLOSE_FLUSH_SECONDS)


def _close_soon(peer: Peer) -> None:
    """The last Health had its chance; close the socket whatever the peer does."""
    asyncio.get_running_loop().create_task(_quietly_close(peer.conn))


async def _quietly_close(conn: ByteConn) -> None:
    with contextlib.suppress(Exception):
        await conn.close()

