"""Bad input closes the offender with a reason; a paired connection beside it keeps relaying."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from nacl.public import Box, PrivateKey, PublicKey

from appliance.relay.client import Packet, connect
from appliance.relay.keys import NodeKey
from tests.integration.appliance.relay.test_relay import ScriptedClient, counters, derp_url, run
from tests.support.relay import make_agent, vouch
from tests.support.server import LiveServer


def _admitted(server: LiveServer, conninfo: str) -> ScriptedClient:
    """A scripted client past its handshake, as a vouched client key."""
    private = PrivateKey.generate()
    vouch(conninfo, make_agent(conninfo), "client", NodeKey(private))
    scripted = ScriptedClient(server)
    scripted.upgrade()
    scripted.handshake(private)
    return scripted


def _bystanders_keep_working(server: LiveServer, conninfo: str, offend: Callable[[], str]) -> str:
    """Run `offend` (returns the offender's close reason) while a paired client and agent relay."""
    agent = make_agent(conninfo)
    agent_key, client_key = vouch(conninfo, agent, "agent"), vouch(conninfo, agent, "client")

    async def scenario() -> str:
        agent_conn = await connect(derp_url(server), agent_key)
        client_conn = await connect(derp_url(server), client_key)
        try:
            reason = await asyncio.to_thread(offend)
            for n in range(50):
                await client_conn.send(agent_key.public, b"still here %d" % n)
                assert await agent_conn.recv() == Packet(client_key.public, b"still here %d" % n)
            assert await client_conn.ping() < 1.0
            return reason
        finally:
            await agent_conn.close()
            await client_conn.close()

    result: str = run(scenario())
    return result


def test_a_malformed_frame_closes_the_offender_only(relay_server: LiveServer, relay_db: str) -> None:
    def offend() -> str:
        scripted = _admitted(relay_server, relay_db)
        scripted.send(0x07, b"\x01\x01\x01")  # NotePreferred must be exactly one byte
        return scripted.health_then_close()

    assert "protocol error" in _bystanders_keep_working(relay_server, relay_db, offend)


def test_an_oversized_frame_is_refused_from_its_header(relay_server: LiveServer, relay_db: str) -> None:
    def offend() -> str:
        scripted = _admitted(relay_server, relay_db)
        # A SendPacket claiming 16 MiB: refused from the 5-byte header, nothing of it is read.
        scripted.sock.sendall(struct.pack(">BI", 0x04, 16 << 20) + b"x" * 100)
        return scripted.health_then_close()

    assert "exceeds its limit" in _bystanders_keep_working(relay_server, relay_db, offend)


def test_unknown_frame_types_are_skipped_not_fatal(relay_server: LiveServer, relay_db: str) -> None:
    scripted = _admitted(relay_server, relay_db)
    scripted.send(0x7E, b"from a future version")
    scripted.send(0x12, b"abcdefgh")
    kind, payload = scripted.frame()
    assert (kind, payload) == (0x13, b"abcdefgh")


def test_a_client_info_that_does_not_open_is_refused(relay_server: LiveServer, relay_db: str) -> None:
    def offend() -> str:
        claimed, actual = PrivateKey.generate(), PrivateKey.generate()
        vouch(relay_db, make_agent(relay_db), "client", NodeKey(claimed))
        scripted = ScriptedClient(relay_server)
        scripted.upgrade()
        _, payload = scripted.frame()
        server = PublicKey(payload[8:40])
        # Claims a vouched key but seals with another: the box does not open, the key is not proven.
        scripted.send(0x02, bytes(claimed.public_key) + bytes(Box(actual, server).encrypt(b"{}")))
        return scripted.health_then_close()

    assert "does not open" in _bystanders_keep_working(relay_server, relay_db, offend)


def test_a_stalled_handshake_is_closed_after_ten_seconds(relay_server: LiveServer, relay_db: str) -> None:
    timing: dict[str, float] = {}

    def offend() -> str:
        scripted = ScriptedClient(relay_server)
        scripted.upgrade()
        started = time.monotonic()
        scripted.frame()  # ServerKey, then we say nothing
        reason = scripted.health_then_close()
        timing["closed_after"] = time.monotonic() - started
        return reason

    assert "within 10 s" in _bystanders_keep_working(relay_server, relay_db, offend)
    assert 9.0 < timing["closed_after"] < 12.0


def test_a_flood_of_undeliverable_packets_closes_the_flooder(relay_server: LiveServer, relay_db: str) -> None:
    def offend() -> str:
        scripted = _admitted(relay_server, relay_db)
        nowhere = NodeKey.generate().public
        frame = struct.pack(">BI", 0x04, 32 + 100) + nowhere + b"x" * 100
        with contextlib.suppress(OSError):  # closed while we were still sending: that is the point
            scripted.sock.sendall(frame * 5000)
        return scripted.health_then_close()

    assert _bystanders_keep_working(relay_server, relay_db, offend).startswith("flood")
    seen = counters(relay_db)
    assert seen["refusals_flood"] >= 1 and seen["drops_unknown_destination"] >= 2000


@pytest.mark.parametrize("payload", [b"\x00" * 10, b"\xff" * 5])
def test_garbage_instead_of_client_info_is_refused(relay_server: LiveServer, relay_db: str, payload: bytes) -> None:
    def offend() -> str:
        scripted = ScriptedClient(relay_server)
        scripted.upgrade()
        scripted.frame()
        scripted.sock.sendall(payload)  # not a ClientInfo frame at all
        return scripted.health_then_close()

    reason: Any = _bystanders_keep_working(relay_server, relay_db, offend)
    assert "protocol error" in reason
