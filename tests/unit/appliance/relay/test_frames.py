"""DERP frames byte for byte against the reference layouts, and round trips of every builder and parser."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.relay import frames
from appliance.relay.frames import Frame, FrameError, FrameType, PeerGoneReason
from appliance.relay.keys import NodeKey, SealError, parse_hex_key
from appliance.relay.limits import MIN_BURST_BYTES, TokenBucket, receive_bucket

keys = st.binary(min_size=32, max_size=32)
packets = st.binary(max_size=frames.MAX_PACKET_SIZE)


def reader(data: bytes) -> frames.ReadExactly:
    view = bytearray(data)

    async def read_exactly(n: int) -> bytes:
        if len(view) < n:
            raise ConnectionError("end of input")
        out = bytes(view[:n])
        del view[:n]
        return out

    return read_exactly


def decode(data: bytes) -> Frame:
    return asyncio.run(frames.read_frame(reader(data)))


# --- byte-level layouts, as the reference table writes them ---

def test_the_magic_is_derp_and_the_key_emoji() -> None:
    assert bytes([0x44, 0x45, 0x52, 0x50, 0xF0, 0x9F, 0x94, 0x91]) == frames.MAGIC


def test_server_key_layout() -> None:
    key = bytes(range(32))
    assert frames.server_key(key) == b"\x01\x00\x00\x00\x28" + bytes.fromhex("44455250F09F9491") + key


def test_client_info_layout() -> None:
    key, nonce, box = b"k" * 32, b"n" * 24, b"sealed json"
    assert frames.client_info(key, nonce + box) == struct.pack(">BI", 2, 32 + 24 + len(box)) + key + nonce + box


def test_server_info_layout() -> None:
    assert frames.server_info(b"n" * 24 + b"box") == b"\x03\x00\x00\x00\x1b" + b"n" * 24 + b"box"
    assert json.loads(frames.server_info_json()) == {"version": 2}
    assert json.loads(frames.server_info_json(bytes_per_second=10, burst=70000)) == {
        "version": 2, "TokenBucketBytesPerSecond": 10, "TokenBucketBytesBurst": 70000}


def test_packet_layouts() -> None:
    dst, src = b"d" * 32, b"s" * 32
    assert frames.send_packet(dst, b"hi") == b"\x04\x00\x00\x00\x22" + dst + b"hi"
    assert frames.recv_packet(src, b"hi") == b"\x05\x00\x00\x00\x22" + src + b"hi"
    assert frames.forward_packet(src, dst, b"") == b"\x0a\x00\x00\x00\x40" + src + dst


def test_small_frame_layouts() -> None:
    key = b"p" * 32
    assert frames.keep_alive() == b"\x06\x00\x00\x00\x00"
    assert frames.note_preferred(True) == b"\x07\x00\x00\x00\x01\x01"
    assert frames.note_preferred(False) == b"\x07\x00\x00\x00\x01\x00"
    assert frames.peer_gone(key, PeerGoneReason.DISCONNECTED) == b"\x08\x00\x00\x00\x21" + key + b"\x00"
    assert frames.peer_gone(key, PeerGoneReason.NOT_HERE) == b"\x08\x00\x00\x00\x21" + key + b"\x01"
    # 32 + 16 + 2 + 1 = 51 bytes (the reference table says 41B; its own fields add up to 51)
    assert frames.peer_present(key, b"\x00" * 10 + b"\xff\xff\x7f\x00\x00\x01", 443, 1) == (
        b"\x09\x00\x00\x00\x33" + key + b"\x00" * 10 + b"\xff\xff\x7f\x00\x00\x01" + b"\x01\xbb\x01")
    assert frames.ping(b"12345678") == b"\x12\x00\x00\x00\x0812345678"
    assert frames.pong(b"12345678") == b"\x13\x00\x00\x00\x0812345678"
    assert frames.health("bad") == b"\x14\x00\x00\x00\x03bad"
    assert frames.health("") == b"\x14\x00\x00\x00\x00"
    assert frames.restarting(1500, 60000) == b"\x15\x00\x00\x00\x08" + bytes.fromhex("000005dc0000ea60")


def test_frame_type_numbers_match_the_reference() -> None:
    assert {t.name: t.value for t in FrameType} == {
        "SERVER_KEY": 0x01, "CLIENT_INFO": 0x02, "SERVER_INFO": 0x03, "SEND_PACKET": 0x04, "RECV_PACKET": 0x05,
        "KEEP_ALIVE": 0x06, "NOTE_PREFERRED": 0x07, "PEER_GONE": 0x08, "PEER_PRESENT": 0x09,
        "FORWARD_PACKET": 0x0A, "WATCH_CONNS": 0x10, "CLOSE_PEER": 0x11, "PING": 0x12, "PONG": 0x13,
        "HEALTH": 0x14, "RESTARTING": 0x15}


def test_disco_magic() -> None:
    assert bytes.fromhex("5453F09F92AC") == frames.DISCO_MAGIC
    assert frames.is_disco(frames.DISCO_MAGIC + b"x") and not frames.is_disco(b"TS")


# --- limits from the header, before any payload ---

def test_an_oversized_length_is_refused_from_the_header() -> None:
    with pytest.raises(FrameError, match="exceeds its limit"):
        frames.parse_header(struct.pack(">BI", 0x04, 32 + frames.MAX_PACKET_SIZE + 1))
    with pytest.raises(FrameError, match="exceeds its limit"):
        frames.parse_header(struct.pack(">BI", 0x06, 1))  # a KeepAlive carries nothing


def test_client_info_bounds() -> None:
    with pytest.raises(FrameError):
        frames.parse_client_info(b"x" * 55)
    assert frames.parse_client_info(b"k" * 32 + b"n" * 24) == (b"k" * 32, b"n" * 24)


def test_unknown_types_are_refused_by_read_frame_and_skipped_by_read_known_frame() -> None:
    unknown = struct.pack(">BI", 0x7E, 3) + b"abc"
    with pytest.raises(FrameError, match="unknown frame type 0x7e"):
        decode(unknown)
    known = asyncio.run(frames.read_known_frame(reader(unknown + frames.keep_alive())))
    assert known == Frame(FrameType.KEEP_ALIVE, b"")
    with pytest.raises(FrameError, match="exceeds"):
        frames.parse_any_header(struct.pack(">BI", 0x7E, frames.MAX_UNKNOWN_PAYLOAD + 1))


def test_parsers_refuse_short_payloads() -> None:
    for parse in (frames.parse_send_packet, frames.parse_recv_packet, frames.parse_peer_gone):
        with pytest.raises(FrameError):
            parse(b"short")
    with pytest.raises(FrameError):
        frames.parse_server_key(b"NOTMAGIC" + b"k" * 32)
    with pytest.raises(FrameError):
        frames.parse_note_preferred(b"\x01\x01")
    with pytest.raises(FrameError):
        frames.parse_ping(b"1234567")
    with pytest.raises(FrameError):
        frames.parse_restarting(b"\x00" * 7)
    with pytest.raises(FrameError):
        frames.send_packet(b"d" * 32, b"x" * (frames.MAX_PACKET_SIZE + 1))


# --- round trips ---

@given(keys)
def test_server_key_round_trip(key: bytes) -> None:
    frame = decode(frames.server_key(key))
    assert frame.type is FrameType.SERVER_KEY and frames.parse_server_key(frame.payload) == key


@given(keys, st.binary(min_size=24, max_size=4096))
def test_client_info_round_trip(key: bytes, sealed: bytes) -> None:
    frame = decode(frames.client_info(key, sealed))
    assert frames.parse_client_info(frame.payload) == (key, sealed)


@given(keys, packets)
def test_send_and_recv_packet_round_trip(key: bytes, packet: bytes) -> None:
    assert frames.parse_send_packet(decode(frames.send_packet(key, packet)).payload) == (key, packet)
    assert frames.parse_recv_packet(decode(frames.recv_packet(key, packet)).payload) == (key, packet)


@given(keys, st.sampled_from(list(PeerGoneReason)))
def test_peer_gone_round_trip(key: bytes, reason: PeerGoneReason) -> None:
    assert frames.parse_peer_gone(decode(frames.peer_gone(key, reason)).payload) == (key, reason)


@given(st.booleans())
def test_note_preferred_round_trip(preferred: bool) -> None:
    assert frames.parse_note_preferred(decode(frames.note_preferred(preferred)).payload) is preferred


@given(st.binary(min_size=8, max_size=8))
def test_ping_pong_round_trip(data: bytes) -> None:
    ping = decode(frames.ping(data))
    assert ping.type is FrameType.PING and frames.parse_ping(ping.payload) == data
    assert decode(frames.pong(data)) == Frame(FrameType.PONG, data)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_restarting_round_trip(reconnect_in: int, try_for: int) -> None:
    frame = decode(frames.restarting(reconnect_in, try_for))
    assert frames.parse_restarting(frame.payload) == (reconnect_in, try_for)


@given(st.text(max_size=500))
def test_health_round_trip(problem: str) -> None:
    assert decode(frames.health(problem)).payload.decode() == problem


@given(st.lists(st.sampled_from([frames.keep_alive(), frames.ping(b"abcdefgh"), frames.health("x"),
                                 frames.send_packet(b"d" * 32, b"payload")]), max_size=20))
def test_a_stream_of_frames_reads_back_in_order(sequence: list[bytes]) -> None:
    read = reader(b"".join(sequence))

    async def read_all() -> list[bytes]:
        return [frames.encode((f := await frames.read_frame(read)).type, f.payload) for _ in sequence]

    assert asyncio.run(read_all()) == sequence


@given(st.lists(st.binary(max_size=300), max_size=12), st.lists(st.integers(0, 400), max_size=20))
def test_chunks_give_back_the_bytes_in_order_however_they_arrived_and_are_taken(
        arrived: list[bytes], sizes: list[int]) -> None:
    buffer, data = frames.Chunks(), b"".join(arrived)
    for chunk in arrived:
        buffer.append(chunk)
    taken, wanted = [], []
    for size in sizes:
        if size <= buffer.size:
            wanted.append(size)
            taken.append(buffer.take(size))
    taken.append(buffer.take(buffer.size))
    assert b"".join(taken) == data and buffer.size == 0
    assert [len(piece) for piece in taken[:-1]] == wanted


@given(keys, keys, packets)
def test_relayed_is_the_recv_packet_of_a_send_packets_payload(source: bytes, destination: bytes,
                                                               packet: bytes) -> None:
    send = decode(frames.send_packet(destination, packet))
    assert b"".join(frames.relayed(source, send.payload)) == frames.recv_packet(source, packet)


# --- keys and the box ---

def test_a_sealed_message_opens_only_with_the_right_pair() -> None:
    client, server, other = NodeKey.generate(), NodeKey.generate(), NodeKey.generate()
    sealed = client.seal_to(server.public, b'{"version": 2}')
    assert len(sealed) == 24 + 14 + 16  # nonce, message, Poly1305 tag
    assert server.open_from(client.public, sealed) == b'{"version": 2}'
    with pytest.raises(SealError):
        server.open_from(other.public, sealed)
    with pytest.raises(SealError):
        server.open_from(client.public, sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_parse_hex_key() -> None:
    key = NodeKey.generate()
    assert parse_hex_key(key.public_hex) == key.public
    with pytest.raises(ValueError):
        parse_hex_key("ab" * 31)


# --- the receive bucket ---

def test_the_receive_bucket_fits_one_whole_frame_and_charges_before_reading() -> None:
    bucket = receive_bucket(1000, 10)
    assert bucket.burst == MIN_BURST_BYTES == 65568
    assert bucket.delay_for(MIN_BURST_BYTES) == 0.0
    assert bucket.delay_for(1000) == pytest.approx(1.0, abs=0.05)
    assert TokenBucket(0, 0).delay_for(10**9) == 0.0  # rate 0: unlimited
