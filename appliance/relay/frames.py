"""DERP framing, byte for byte as Tailscale's derp package writes it, so stock DERP clients could speak to us.

Every frame is `[1 byte type][4 bytes big-endian payload length][payload]`; the length excludes the
5-byte header. Each frame type's layout is written beside its constant. Lengths are checked against
the type's limit from the header alone, before a payload byte is read (`check_length`), so a hostile
length cannot make anyone buffer it. Pure: no I/O and no crypto here (keys.py seals and opens boxes).

Protocol version history (PROTOCOL_VERSION):
    1  the first version: RecvPacket carried only the packet
    2  RecvPacket starts with the sender's 32-byte key (what we speak; ServerInfo says {"version": 2})
"""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

PROTOCOL_VERSION = 2
MAGIC = "DERP🔑".encode()  # 44 45 52 50 F0 9F 94 91
KEY_LEN = 32  # Curve25519 public key
NONCE_LEN = 24  # NaCl box nonce
MAX_PACKET_SIZE = 64 << 10  # a SendPacket's packet
MAX_INFO_LEN = 1 << 20  # ClientInfo's sealed JSON, as the client library bounds it
MAX_CLIENT_INFO_LEN = 256 << 10  # what the server accepts for a whole ClientInfo payload
MIN_CLIENT_INFO_LEN = KEY_LEN + NONCE_LEN
MAX_FRAME_SIZE = 1 << 20  # a client refuses anything larger (the server never writes more than 10 MiB)
MAX_SERVER_KEY_READ = 1 << 10  # a client reads at most this much of ServerKey (future bytes allowed)
KEEP_ALIVE_SECONDS = 60.0  # plus a random 0-5 s, so keep-alives of many clients spread out
HEADER = struct.Struct(">BI")
HEADER_LEN = HEADER.size  # 5
DISCO_MAGIC = "TS💬".encode()  # 54 53 F0 9F 92 AC: a disco packet (the only kind that earns a PeerGone)
PING_LEN = 8
MAX_PING_LEN = 1000  # the server accepts 8..1000 bytes and echoes the first 8
MAX_UNKNOWN_PAYLOAD = 64 << 10  # a frame type we do not know is skipped up to this length, refused beyond
SKIP_CHUNK = 16 << 10


class FrameType(IntEnum):
    SERVER_KEY = 0x01  # S->C  MAGIC(8) + server public key(32) [+ future bytes]
    CLIENT_INFO = 0x02  # C->S  client public key(32) + nonce(24) + box(JSON ClientInfo)
    SERVER_INFO = 0x03  # S->C  nonce(24) + box(JSON {"version": 2, optional TokenBucket...})
    SEND_PACKET = 0x04  # C->S  destination key(32) + packet(<= 64 KiB)
    RECV_PACKET = 0x05  # S->C  source key(32) + packet (version 2)
    KEEP_ALIVE = 0x06  # S->C  empty
    NOTE_PREFERRED = 0x07  # C->S  one byte: 01 preferred, 00 not; length exactly 1
    PEER_GONE = 0x08  # S->C  key(32) + reason(1): 00 disconnected, 01 not here
    PEER_PRESENT = 0x09  # S->watcher  key(32) + IPv6-mapped IP(16) + BE port(2) + flags(1)
    FORWARD_PACKET = 0x0A  # mesh->S  source key(32) + destination key(32) + packet
    WATCH_CONNS = 0x10  # mesh->S  empty (needs the mesh key)
    CLOSE_PEER = 0x11  # mesh->S  key(32) (needs the mesh key)
    PING = 0x12  # both  8 bytes of data to echo
    PONG = 0x13  # both  the 8 bytes of the ping it answers
    HEALTH = 0x14  # S->C  UTF-8 text of a problem; empty means healthy again
    RESTARTING = 0x15  # S->C  BE uint32 reconnect-in ms + BE uint32 try-for ms


class PeerGoneReason(IntEnum):
    DISCONNECTED = 0x00
    NOT_HERE = 0x01


# The largest payload a receiver accepts for each type, checked from the header before reading.
MAX_PAYLOAD: dict[FrameType, int] = {
    FrameType.SERVER_KEY: MAX_SERVER_KEY_READ,
    FrameType.CLIENT_INFO: MAX_CLIENT_INFO_LEN,
    FrameType.SERVER_INFO: MAX_INFO_LEN,
    FrameType.SEND_PACKET: KEY_LEN + MAX_PACKET_SIZE,
    FrameType.RECV_PACKET: KEY_LEN + MAX_PACKET_SIZE,
    FrameType.KEEP_ALIVE: 0,
    FrameType.NOTE_PREFERRED: 1,
    FrameType.PEER_GONE: KEY_LEN + 1,
    FrameType.PEER_PRESENT: KEY_LEN + 16 + 2 + 1,
    FrameType.FORWARD_PACKET: 2 * KEY_LEN + MAX_PACKET_SIZE,
    FrameType.WATCH_CONNS: 0,
    FrameType.CLOSE_PEER: KEY_LEN,
    FrameType.PING: MAX_PING_LEN,
    FrameType.PONG: PING_LEN,
    FrameType.HEALTH: MAX_FRAME_SIZE,
    FrameType.RESTARTING: 8,
}


class FrameError(ValueError):
    """A frame that breaks the protocol: the peer that sent it is closed with this reason."""


@dataclass(frozen=True)
class Frame:
    type: FrameType
    payload: bytes


def frame_type(raw: int) -> FrameType:
    try:
        return FrameType(raw)
    except ValueError:
        raise FrameError(f"unknown frame type 0x{raw:02x}") from None


def check_length(kind: FrameType, length: int) -> None:
    """Refuse a payload length the type does not allow, before any of the payload is read."""
    if length > MAX_PAYLOAD[kind]:
        raise FrameError(f"{kind.name} frame of {length} bytes exceeds its limit of {MAX_PAYLOAD[kind]}")


def parse_header(header: bytes) -> tuple[FrameType, int]:
    """(type, payload length) of a 5-byte header; unknown types and over-long lengths raise FrameError."""
    raw, length = HEADER.unpack(header)
    kind = frame_type(raw)
    check_length(kind, length)
    return kind, length


def encode(kind: FrameType, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


ReadExactly = Callable[[int], Awaitable[bytes]]


async def read_frame(read_exactly: ReadExactly) -> Frame:
    """The next frame from a byte source; the length is checked before the payload is read."""
    kind, length = parse_header(await read_exactly(HEADER_LEN))
    return Frame(kind, await read_exactly(length) if length else b"")


def parse_any_header(header: bytes) -> tuple[FrameType | None, int]:
    """(type, payload length); None for a type this version does not know, whose payload the reader skips.

    A later protocol version may add frame types (derper's clients skip what they do not know), so an
    unknown type is not an error as long as its length stays within MAX_UNKNOWN_PAYLOAD.
    """
    raw, length = HEADER.unpack(header)
    try:
        kind = FrameType(raw)
    except ValueError:
        if length > MAX_UNKNOWN_PAYLOAD:
            raise FrameError(f"unknown frame type 0x{raw:02x} of {length} bytes "
                             f"exceeds {MAX_UNKNOWN_PAYLOAD}") from None
        return None, length
    check_length(kind, length)
    return kind, length


async def skip(read_exactly: ReadExactly, length: int) -> None:
    """Read and forget `length` bytes, a bounded chunk at a time."""
    while length:
        step = min(length, SKIP_CHUNK)
        await read_exactly(step)
        length -= step


async def read_known_frame(read_exactly: ReadExactly) -> Frame:
    """The next frame of a known type; frames of unknown types (within their bound) are skipped."""
    while True:
        kind, length = parse_any_header(await read_exactly(HEADER_LEN))
        if kind is not None:
            return Frame(kind, await read_exactly(length) if length else b"")
        await skip(read_exactly, length)


class Chunks:
    """Bytes as a socket delivered them, taken in pieces of any size: one copy per piece, and no piece
    taken shifts what is buffered behind it (as `del bytearray[:n]` with a large buffer would)."""

    __slots__ = ("_chunks", "_offset", "size")

    def __init__(self) -> None:
        # A list, not a deque: an empty deque costs 760 bytes, and a relay holds one per connection;
        # the chunks waiting are few (a socket read is up to 256 KiB), so popping the front is cheap.
        self._chunks: list[bytes] = []
        self._offset = 0  # into _chunks[0]
        self.size = 0  # bytes buffered and not taken yet

    def append(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self.size += len(data)

    def take(self, n: int) -> bytes:
        """The next `n` bytes; the caller checked that `size` >= n."""
        if not n:
            return b""
        chunks, offset = self._chunks, self._offset
        self.size -= n
        first = chunks[0]
        if len(first) - offset > n:
            self._offset = offset + n
            return first[offset:offset + n]
        if len(first) - offset == n:
            del chunks[0]
            self._offset = 0
            return first[offset:] if offset else first
        parts: list[memoryview] = []
        while n:
            view = memoryview(chunks[0])[offset:offset + n]
            parts.append(view)
            n -= len(view)
            offset += len(view)
            if offset == len(chunks[0]):
                del chunks[0]
                offset = 0
        self._offset = offset
        return b"".join(parts)


def _key(raw: bytes, what: str) -> bytes:
    if len(raw) != KEY_LEN:
        raise FrameError(f"{what} must be {KEY_LEN} bytes, got {len(raw)}")
    return raw


# --- payload builders and parsers, one pair per frame type ---

def server_key(public_key: bytes) -> bytes:
    return encode(FrameType.SERVER_KEY, MAGIC + _key(public_key, "server key"))


def parse_server_key(payload: bytes) -> bytes:
    if len(payload) < len(MAGIC) + KEY_LEN or not payload.startswith(MAGIC):
        raise FrameError("ServerKey frame lacks the DERP magic and a 32-byte key")
    return payload[len(MAGIC):len(MAGIC) + KEY_LEN]


def client_info(public_key: bytes, sealed: bytes) -> bytes:
    """`sealed` is nonce + box(JSON), as keys.seal_to writes it."""
    return encode(FrameType.CLIENT_INFO, _key(public_key, "client key") + sealed)


def parse_client_info(payload: bytes) -> tuple[bytes, bytes]:
    """(client public key, nonce + box)."""
    if not MIN_CLIENT_INFO_LEN <= len(payload) <= MAX_CLIENT_INFO_LEN:
        raise FrameError(f"ClientInfo of {len(payload)} bytes; expected {MIN_CLIENT_INFO_LEN}..{MAX_CLIENT_INFO_LEN}")
    return payload[:KEY_LEN], payload[KEY_LEN:]


def client_info_json(*, mesh_key: str = "", can_ack_pings: bool = True, app_name: str = "") -> bytes:
    info: dict[str, object] = {"version": PROTOCOL_VERSION, "CanAckPings": can_ack_pings}
    if mesh_key:
        info["meshKey"] = mesh_key
    if app_name:
        info["AppName"] = app_name
    return json.dumps(info).encode()


def server_info(sealed: bytes) -> bytes:
    return encode(FrameType.SERVER_INFO, sealed)


def server_info_json(*, bytes_per_second: int = 0, burst: int = 0) -> bytes:
    info: dict[str, int] = {"version": PROTOCOL_VERSION}
    if bytes_per_second:
        info["TokenBucketBytesPerSecond"] = bytes_per_second
        info["TokenBucketBytesBurst"] = burst
    return json.dumps(info).encode()


def send_packet(destination: bytes, packet: bytes) -> bytes:
    return send_packet_head(destination, len(packet)) + packet


def send_packet_head(destination: bytes, length: int) -> bytes:
    """A SendPacket's header and destination key, for a packet of `length` bytes that follows them."""
    if length > MAX_PACKET_SIZE:
        raise FrameError(f"packet of {length} bytes exceeds {MAX_PACKET_SIZE}")
    return HEADER.pack(FrameType.SEND_PACKET, KEY_LEN + length) + _key(destination, "destination key")


def parse_send_packet(payload: bytes) -> tuple[bytes, bytes]:
    """(destination key, packet)."""
    if len(payload) < KEY_LEN:
        raise FrameError(f"SendPacket of {len(payload)} bytes is shorter than a key")
    return payload[:KEY_LEN], payload[KEY_LEN:]


def recv_packet(source: bytes, packet: bytes) -> bytes:
    return encode(FrameType.RECV_PACKET, _key(source, "source key") + packet)


def relayed(source: bytes, send_payload: bytes) -> tuple[bytes, memoryview]:
    """The RecvPacket that delivers a SendPacket's payload (destination key + packet) from `source`, in
    two parts: its header and the source key, then the packet as a view of the payload (not copied).
    """
    return (HEADER.pack(FrameType.RECV_PACKET, len(send_payload)) + _key(source, "source key"),
            memoryview(send_payload)[KEY_LEN:])


def parse_recv_packet(payload: bytes) -> tuple[bytes, bytes]:
    """(source key, packet)."""
    if len(payload) < KEY_LEN:
        raise FrameError(f"RecvPacket of {len(payload)} bytes is shorter than a key")
    return payload[:KEY_LEN], payload[KEY_LEN:]


def keep_alive() -> bytes:
    return encode(FrameType.KEEP_ALIVE)


def note_preferred(preferred: bool) -> bytes:
    return encode(FrameType.NOTE_PREFERRED, b"\x01" if preferred else b"\x00")


def parse_note_preferred(payload: bytes) -> bool:
    if len(payload) != 1:
        raise FrameError(f"NotePreferred must be 1 byte, got {len(payload)}")
    return payload != b"\x00"


def peer_gone(key: bytes, reason: PeerGoneReason) -> bytes:
    return encode(FrameType.PEER_GONE, _key(key, "peer key") + bytes([reason]))


def parse_peer_gone(payload: bytes) -> tuple[bytes, PeerGoneReason]:
    """(key, reason); an old server's 32-byte form means disconnected; unknown reasons are kept as disconnected."""
    if len(payload) < KEY_LEN:
        raise FrameError(f"PeerGone of {len(payload)} bytes is shorter than a key")
    raw = payload[KEY_LEN] if len(payload) > KEY_LEN else 0
    reason = PeerGoneReason.NOT_HERE if raw == PeerGoneReason.NOT_HERE else PeerGoneReason.DISCONNECTED
    return payload[:KEY_LEN], reason


def peer_present(key: bytes, ip16: bytes, port: int, flags: int) -> bytes:
    if len(ip16) != 16:
        raise FrameError("PeerPresent needs a 16-byte (IPv6 or IPv4-mapped) address")
    return encode(FrameType.PEER_PRESENT, _key(key, "peer key") + ip16 + struct.pack(">HB", port, flags))


def forward_packet(source: bytes, destination: bytes, packet: bytes) -> bytes:
    return encode(FrameType.FORWARD_PACKET, _key(source, "source key") + _key(destination, "destination key") + packet)


def ping(data: bytes) -> bytes:
    if len(data) != PING_LEN:
        raise FrameError(f"Ping data must be {PING_LEN} bytes")
    return encode(FrameType.PING, data)


def parse_ping(payload: bytes) -> bytes:
    """The 8 bytes to echo; the server accepts 8..1000 bytes."""
    if not PING_LEN <= len(payload) <= MAX_PING_LEN:
        raise FrameError(f"Ping of {len(payload)} bytes; expected {PING_LEN}..{MAX_PING_LEN}")
    return payload[:PING_LEN]


def pong(data: bytes) -> bytes:
    return encode(FrameType.PONG, data[:PING_LEN])


def health(problem: str) -> bytes:
    return encode(FrameType.HEALTH, problem.encode())


def restarting(reconnect_in_ms: int, try_for_ms: int) -> bytes:
    return encode(FrameType.RESTARTING, struct.pack(">II", reconnect_in_ms, try_for_ms))


def parse_restarting(payload: bytes) -> tuple[int, int]:
    """(reconnect in ms, try for ms)."""
    if len(payload) < 8:
        raise FrameError(f"Restarting of {len(payload)} bytes; expected 8")
    reconnect_in, try_for = struct.unpack(">II", payload[:8])
    return reconnect_in, try_for


def is_disco(packet: bytes, start: int = 0) -> bool:
    return packet.startswith(DISCO_MAGIC, start)
