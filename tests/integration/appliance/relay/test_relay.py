"""The relay on `appliance server`'s one port: handshake, admission, pairing, offenders, revocation."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
import requests
from nacl.public import Box, PrivateKey, PublicKey

from appliance.relay.client import DerpClient, Health, Packet, PeerGone, RelayClosed, RelayRefused, connect
from appliance.relay.frames import PeerGoneReason
from appliance.relay.keys import NodeKey
from tests.support.relay import Agent, execute, make_agent, vouch
from tests.support.server import LiveServer

MAGIC = bytes.fromhex("44455250F09F9491")  # "DERP🔑", as the reference writes it


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def derp_url(server: LiveServer) -> str:
    return server.url + "/derp"


def counters(conninfo: str) -> dict[str, int]:
    time.sleep(5.5)  # the relay writes its counters every 5 s
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT counters FROM relay_stats").fetchone()
    assert row is not None
    return dict(row[0])


# --- a client written from the reference, bytes on a socket ---

class ScriptedClient:
    def __init__(self, server: LiveServer) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=15)
        self.buffer = b""

    def upgrade(self) -> dict[str, str]:
        self.sock.sendall(b"GET /derp HTTP/1.1\r\nHost: relay\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *lines = head.decode().split("\r\n")
        assert status.startswith("HTTP/1.1 101 "), head
        return {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        return data

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self) -> tuple[int, bytes]:
        kind, length = struct.unpack(">BI", self.read_exactly(5))
        return kind, self.read_exactly(length)

    def send(self, kind: int, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">BI", kind, len(payload)) + payload)

    def handshake(self, private: PrivateKey) -> tuple[bytes, dict[str, Any]]:
        kind, payload = self.frame()
        assert kind == 0x01 and payload[:8] == MAGIC and len(payload) == 40
        server = payload[8:40]
        sealed = bytes(Box(private, PublicKey(server)).encrypt(b'{"version": 2, "CanAckPings": true}'))
        self.send(0x02, bytes(private.public_key) + sealed)
        kind, payload = self.frame()
        assert kind == 0x03, (kind, payload)
        return server, json.loads(Box(private, PublicKey(server)).decrypt(payload))

    def health_then_close(self) -> str:
        """The reason in the Health frame the relay sends before closing, and that it did close."""
        problem = ""
        try:
            while True:
                kind, payload = self.frame()
                if kind == 0x14:
                    problem = payload.decode()
        except (ConnectionError, OSError):
            return problem


def test_a_client_written_from_the_reference_is_admitted_and_relays_to_its_agent(
        relay_server: LiveServer, relay_db: str) -> None:
    agent = make_agent(relay_db)
    agent_key = vouch(relay_db, agent, "agent")
    private = PrivateKey.generate()
    vouch(relay_db, agent, "client", NodeKey(private))
    scripted = ScriptedClient(relay_server)
    headers = scripted.upgrade()
    assert headers["upgrade"] == "DERP" and headers["derp-version"] == "2"
    server_key, info = scripted.handshake(private)
    assert headers["derp-public-key"] == server_key.hex()
    assert info == {"version": 2}

    async def relay_both_ways() -> tuple[Any, int, bytes]:
        agent_conn = await connect(derp_url(relay_server), agent_key)
        try:
            await asyncio.to_thread(scripted.send, 0x04, agent_key.public + b"hello agent")
            got = await agent_conn.recv()
            await agent_conn.send(bytes(private.public_key), b"hello client")
            kind, payload = await asyncio.to_thread(scripted.frame)
            while kind == 0x06:  # a KeepAlive may come first
                kind, payload = await asyncio.to_thread(scripted.frame)
            return got, kind, payload
        finally:
            await agent_conn.close()

    got, kind, payload = run(relay_both_ways())
    assert got == Packet(bytes(private.public_key), b"hello agent")
    assert kind == 0x05 and payload == agent_key.public + b"hello client"
    # Ping -> Pong with the same 8 bytes.
    scripted.send(0x12, b"12345678")
    kind, payload = scripted.frame()
    while kind in (0x06, 0x08):
        kind, payload = scripted.frame()
    assert (kind, payload) == (0x13, b"12345678")


def test_an_unvouched_key_is_closed_with_a_reason(relay_server: LiveServer) -> None:
    scripted = ScriptedClient(relay_server)
    scripted.upgrade()
    _, payload = scripted.frame()
    server = payload[8:40]
    private = PrivateKey.generate()
    scripted.send(0x02, bytes(private.public_key) + bytes(Box(private, PublicKey(server)).encrypt(b"{}")))
    assert "not admitted" in scripted.health_then_close()
    with pytest.raises(RelayRefused, match="not admitted"):
        run(connect(derp_url(relay_server), NodeKey.generate()))


def test_an_expired_vouching_is_refused(relay_server: LiveServer, relay_db: str) -> None:
    from datetime import UTC, datetime, timedelta
    key = vouch(relay_db, make_agent(relay_db), "agent", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    time.sleep(0.3)
    with pytest.raises(RelayRefused, match="expired"):
        run(connect(derp_url(relay_server), key))


def test_a_client_cannot_reach_another_users_agent(relay_server: LiveServer, relay_db: str) -> None:
    mine, theirs = make_agent(relay_db), make_agent(relay_db)
    my_client, their_agent = vouch(relay_db, mine, "client"), vouch(relay_db, theirs, "agent")
    my_agent = vouch(relay_db, mine, "agent")

    async def attempt() -> Any:
        client = await connect(derp_url(relay_server), my_client)
        victim = await connect(derp_url(relay_server), their_agent)
        own = await connect(derp_url(relay_server), my_agent)
        try:
            for _ in range(20):
                await client.send(their_agent.public, b"let me in")
            await client.send(my_agent.public, b"marker")  # delivered in order after the refused ones
            assert await own.recv() == Packet(my_client.public, b"marker")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(victim.recv(), 1.0)
        finally:
            for conn in (client, victim, own):
                await conn.close()

    run(attempt())
    assert counters(relay_db)["drops_unpaired"] >= 20


async def _connected(server: LiveServer, *keys: NodeKey) -> list[DerpClient]:
    return [await connect(derp_url(server), key) for key in keys]


async def _closed_within(client: DerpClient, seconds: float) -> RelayClosed:
    started = time.monotonic()
    try:
        while True:
            await asyncio.wait_for(client.recv(), seconds)
    except RelayClosed as closed:
        assert time.monotonic() - started < seconds
        return closed


def _revocation(relay_server: LiveServer, relay_db: str, revoke: Callable[[Agent], None]) -> tuple[str, Any]:
    """Revoke mid-session: (the reason the client was closed with, what the agent got next)."""
    agent = make_agent(relay_db)
    agent_key, client_key = vouch(relay_db, agent, "agent"), vouch(relay_db, agent, "client")

    async def scenario() -> tuple[str, Any]:
        agent_conn, client_conn = await _connected(relay_server, agent_key, client_key)
        await client_conn.send(agent_key.public, b"before")
        assert await agent_conn.recv() == Packet(client_key.public, b"before")
        await asyncio.to_thread(revoke, agent)
        closed = await _closed_within(client_conn, 1.0)
        after: Any
        try:
            after = await asyncio.wait_for(agent_conn.recv(), 1.0)
        except RelayClosed as agent_closed:
            after = agent_closed
        await agent_conn.close()
        return closed.reason, after

    result: tuple[str, Any] = run(scenario())
    return result


def test_revoking_the_clients_api_key_closes_its_connection_within_a_second(
        relay_server: LiveServer, relay_db: str) -> None:
    reason, agent_saw = _revocation(relay_server, relay_db, lambda agent: execute(
        relay_db, "UPDATE api_keys SET revoked_at = now() WHERE id = %s", agent.api_key_id))
    assert reason.startswith("access revoked")
    assert isinstance(agent_saw, PeerGone) and agent_saw.reason is PeerGoneReason.DISCONNECTED  # the agent stays


def test_queueing_a_stop_build_closes_the_workspaces_connections_within_a_second(
        relay_server: LiveServer, relay_db: str) -> None:
    def stop(agent: Agent) -> None:
        execute(relay_db, """
            WITH job AS (INSERT INTO provisioner_jobs (type, timeout_seconds) VALUES ('workspace_build', 60)
                         RETURNING id)
            INSERT INTO workspace_builds (workspace_id, build_number, transition, template_version_id, job_id)
            SELECT %s, 2, 'stop', template_version_id, (SELECT id FROM job) FROM workspace_builds
             WHERE workspace_id = %s""", agent.workspace_id, agent.workspace_id)

    reason, agent_saw = _revocation(relay_server, relay_db, stop)
    assert reason.startswith("access revoked")
    assert isinstance(agent_saw, Health | RelayClosed) and "access revoked" in str(agent_saw)  # the agent too


def test_latency_check_and_probe_answer_any_origin(relay_server: LiveServer) -> None:
    for path in ("/derp/latency-check", "/derp/probe"):
        for method in ("GET", "HEAD"):
            response = requests.request(method, relay_server.url + path, timeout=5)
            assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
    plain = requests.get(relay_server.url + "/derp", timeout=5)
    assert plain.status_code == 426 and plain.text == "DERP requires connection upgrade"


def test_the_websocket_fallback_relays_like_upgrade_derp(relay_server: LiveServer, relay_db: str) -> None:
    agent = make_agent(relay_db)
    agent_key, client_key = vouch(relay_db, agent, "agent"), vouch(relay_db, agent, "client")

    async def scenario() -> None:
        agent_conn = await connect(derp_url(relay_server), agent_key, websocket=True)
        client_conn = await connect(derp_url(relay_server), client_key)
        try:
            await client_conn.send(agent_key.public, b"over websocket")
            assert await agent_conn.recv() == Packet(client_key.public, b"over websocket")
            await agent_conn.send(client_key.public, b"and back")
            assert await client_conn.recv() == Packet(agent_key.public, b"and back")
            assert await agent_conn.ping() < 1.0
        finally:
            await agent_conn.close()
            await client_conn.close()

    run(scenario())
