"""No loss between paired peers (backpressure, not drops), a dead reader closed, Restarting on a graceful stop."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from aiohttp import web
from nacl.public import Box, PrivateKey, PublicKey

from appliance.app import create_app
from appliance.config import Address
from appliance.db.database import Database
from appliance.gateway.front import EmbeddedFront
from appliance.relay.client import Packet, RelayClosed, RelayRefused, Restarting, connect
from appliance.relay.http import RELAY, create_relay_app
from appliance.relay.keys import NodeKey
from appliance.relay.limits import accept_limiter
from appliance.relay.server import RelaySettings
from appliance.server.runtime import bind
from tests.integration.appliance.relay.test_relay import MAGIC, derp_url, run
from tests.support.images import cli_env
from tests.support.postgres import free_port
from tests.support.relay import make_agent, vouch
from tests.support.server import LiveServer, make_config, wait_for_health

TOTAL = 100 << 20
PACKET = 60 << 10


def test_100_mb_to_a_slow_reader_arrive_whole_and_in_order(relay_server: LiveServer, relay_db: str) -> None:
    agent = make_agent(relay_db)
    agent_key, client_key = vouch(relay_db, agent, "agent"), vouch(relay_db, agent, "client")
    source = hashlib.sha256()
    sink = hashlib.sha256()

    async def scenario() -> tuple[int, float]:
        agent_conn = await connect(derp_url(relay_server), agent_key)
        client_conn = await connect(derp_url(relay_server), client_key)
        blocked = 0.0

        async def send() -> None:
            nonlocal blocked
            chunk = os.urandom(PACKET)
            for n in range(TOTAL // PACKET + 1):
                data = struct.pack(">I", n) + chunk[: PACKET - 4 - (n % 7)]
                source.update(data)
                started = time.monotonic()
                await client_conn.send(agent_key.public, data)
                blocked = max(blocked, time.monotonic() - started)

        async def receive() -> int:
            got = 0
            for n in range(TOTAL // PACKET + 1):
                if n in (100, 900):
                    await asyncio.sleep(3)  # a slow reader: the sender must wait, not lose
                packet = await agent_conn.recv()
                assert isinstance(packet, Packet) and struct.unpack(">I", packet.data[:4])[0] == n
                sink.update(packet.data)
                got += len(packet.data)
            return got

        try:
            _, got = await asyncio.gather(send(), receive())
        finally:
            await agent_conn.close()
            await client_conn.close()
        return got, blocked

    got, blocked = run(scenario())
    assert got >= TOTAL
    assert sink.hexdigest() == source.hexdigest()
    assert blocked > 1.0  # the sender was held back while the reader slept: backpressure, not drops


@asynccontextmanager
async def _relay_only(conninfo: str, pki: Path, settings: RelaySettings) -> AsyncIterator[tuple[str, web.Application]]:
    """The relay app alone on a TCP port of this loop, with `settings` (short timeouts for a test)."""
    db = Database(conninfo)
    app = create_relay_app(make_config(postgres_url=conninfo, pki_dir=pki), db)
    app[RELAY].relay.settings = settings
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/derp", app
    finally:
        await runner.cleanup()
        db.close()


def test_a_destination_that_stops_reading_is_closed_and_frees_its_sender(relay_db: str, tmp_path: Path) -> None:
    agent = make_agent(relay_db)
    agent_key, client_key = vouch(relay_db, agent, "agent"), vouch(relay_db, agent, "client")

    async def scenario() -> tuple[dict[str, int], str]:
        async with _relay_only(relay_db, tmp_path, RelaySettings(stall_seconds=2.0)) as (url, app):
            agent_conn = await connect(url, agent_key)
            client_conn = await connect(url, client_key)
            try:
                # The agent never reads: its socket fills, then the relay's queue, and the sender is held back
                # until the relay gives up on the agent; then the sender goes on (its packets are dropped).
                async with asyncio.timeout(30):
                    for _ in range(2000):  # 120 MB: more than every buffer on the way holds
                        await client_conn.send(agent_key.public, b"x" * PACKET)
                try:
                    while True:
                        await asyncio.wait_for(agent_conn.recv(), 10)
                except RelayClosed as closed:
                    reason = closed.reason
                return dict(app[RELAY].stats.counts), reason
            finally:
                await agent_conn.close()
                await client_conn.close()

    seen, reason = run(scenario())
    assert seen["drops_stalled_destination"] == 1 and seen["drops_not_here"] > 0
    assert reason  # the agent's connection ended (its last Health may be stuck behind what it never read)


def test_a_graceful_stop_of_the_server_tells_clients_it_is_restarting(relay_db: str, tmp_path: Path) -> None:
    agent = make_agent(relay_db)
    agent_key = vouch(relay_db, agent, "agent")
    port = free_port()
    config = make_config(port=port, postgres_url=relay_db, pki_dir=tmp_path)
    db = Database(relay_db)
    front = EmbeddedFront(config, db, create_app(config, db, behind_front=True), bind(config.http_address))
    front.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url)

        async def scenario() -> tuple[object, str]:
            conn = await connect(url + "/derp", agent_key)
            await asyncio.to_thread(front.stop)
            event = await asyncio.wait_for(conn.recv(), 5)
            try:
                await asyncio.wait_for(conn.recv(), 5)
                closed = ""
            except RelayClosed as err:
                closed = err.reason
            await conn.close()
            return event, closed

        event, closed = run(scenario())
    finally:
        front.stop()
        db.close()
    assert isinstance(event, Restarting) and event.reconnect_in > 0 and event.try_for > 0
    assert closed
    with psycopg.connect(relay_db) as conn:  # the relay recorded the agent's connection and its end
        row = conn.execute("SELECT first_connected_at, last_connected_at, disconnected_at FROM workspace_agents "
                           "WHERE id = %s", (agent.id,)).fetchone()
    assert row is not None and all(row)


def test_appliance_relay_serve_speaks_derp_on_its_socket_and_says_restarting_on_sigterm(
        relay_db: str, tmp_path: Path) -> None:
    private = PrivateKey.generate()
    vouch(relay_db, make_agent(relay_db), "agent", NodeKey(private))
    sock_path = tmp_path / "relay.sock"
    env = cli_env(make_config(postgres_url=relay_db, pki_dir=tmp_path / "pki",
                              registry_address=Address("127.0.0.1", free_port())))
    (tmp_path / "pki").mkdir()
    process = subprocess.Popen([sys.executable, "-m", "appliance", "relay", "serve", "--socket", str(sock_path)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not sock_path.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
            time.sleep(0.1)
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(15)
        client.connect(str(sock_path))
        client.sendall(b"GET /derp HTTP/1.1\r\nHost: relay\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 45:
            received += client.recv(65536)
        head, rest = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        assert rest[:5] == b"\x01\x00\x00\x00\x28" and rest[5:13] == MAGIC
        server = PublicKey(rest[13:45])
        sealed = bytes(Box(private, server).encrypt(b"{}"))
        client.sendall(struct.pack(">BI", 0x02, 32 + len(sealed)) + bytes(private.public_key) + sealed)
        rest = rest[45:]
        while len(rest) < 5 or len(rest) < 5 + struct.unpack(">I", rest[1:5])[0]:
            rest += client.recv(65536)
        assert rest[0] == 0x03  # ServerInfo: admitted
        process.send_signal(signal.SIGTERM)
        tail = b""
        while chunk := client.recv(65536):
            tail += chunk
        assert b"\x15\x00\x00\x00\x08" in rest + tail  # Restarting(reconnect_in, try_for)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    # The key persisted, 0600, and the next start would use the same one.
    key_file = tmp_path / "pki" / "relay-node.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert PrivateKey(bytes.fromhex(key_file.read_text().strip())).public_key == server


def test_past_the_accept_limit_new_connections_are_refused_with_a_reason(relay_db: str, tmp_path: Path) -> None:
    key = vouch(relay_db, make_agent(relay_db), "agent")

    async def scenario() -> str:
        async with _relay_only(relay_db, tmp_path, RelaySettings()) as (url, app):
            app[RELAY].accept = accept_limiter(0.1, 2)
            first, second = await connect(url, key), await connect(url, NodeKey.generate(), timeout=5)
            await first.close()
            await second.close()
            raise AssertionError("the second connection should not have been admitted")

    with pytest.raises(RelayRefused) as refused:
        run(scenario())
    assert "not admitted" in refused.value.reason  # the second of the burst of 2 got in, unvouched

    async def burst() -> str:
        async with _relay_only(relay_db, tmp_path, RelaySettings()) as (url, app):
            app[RELAY].accept = accept_limiter(0.1, 1)
            first = await connect(url, key)
            try:
                await connect(url, key)
            except RelayRefused as err:
                return err.reason
            finally:
                await first.close()
            return ""

    assert "429" in run(burst())


def test_the_receive_rate_limit_is_advertised_and_holds(relay_db: str, tmp_path: Path) -> None:
    agent = make_agent(relay_db)
    agent_key, client_key = vouch(relay_db, agent, "agent"), vouch(relay_db, agent, "client")
    rate = 100_000

    async def scenario() -> float:
        async with _relay_only(relay_db, tmp_path, RelaySettings(rate_bytes_per_second=rate)) as (url, _):
            agent_conn, client_conn = await connect(url, agent_key), await connect(url, client_key)
            started = time.monotonic()
            for _ in range(5):  # 300 KB: the 65,568-byte burst, then 100 KB/s
                await client_conn.send(agent_key.public, b"x" * PACKET)
            for _ in range(5):
                await agent_conn.recv()
            elapsed = time.monotonic() - started
            await agent_conn.close()
            await client_conn.close()
            return elapsed

    assert run(scenario()) > (5 * PACKET - 65568) / rate * 0.9


def test_a_newer_connection_with_the_same_key_replaces_the_older(relay_server: LiveServer, relay_db: str) -> None:
    agent = make_agent(relay_db)
    agent_key, client_key = vouch(relay_db, agent, "agent"), vouch(relay_db, agent, "client")

    async def scenario() -> str:
        old = await connect(derp_url(relay_server), agent_key)
        new = await connect(derp_url(relay_server), agent_key)
        client = await connect(derp_url(relay_server), client_key)
        try:
            await client.send(agent_key.public, b"to the newest")
            assert await new.recv() == Packet(client_key.public, b"to the newest")
            while True:
                await asyncio.wait_for(old.recv(), 3)
        except RelayClosed as closed:
            return closed.reason
        finally:
            for conn in (old, new, client):
                await conn.close()

    assert run(scenario()).startswith("replaced")
