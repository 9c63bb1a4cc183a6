"""Byte streams and SSH sessions through the real relay of a live server, to an agent paired by the real API:
nothing lost or reordered, a slow channel stalls only itself, the relay never reads plaintext, and nobody
reaches an agent the control plane did not pair them with."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from appliance.errors import OperatorError
from appliance.relay.client import Packet
from appliance.relay.dial import ECHO, connect_admitted, open_session, pair, relay_url
from appliance.relay.keys import NodeKey, parse_hex_key
from appliance.relay.stream import HEADER, Kind, PeerStreams, encode
from appliance.sdk.client import Client
from tests.support.agents import SeededAgent, seed_agent, seed_template
from tests.support.api import Api
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer
from tests.support.tap import tapped

pytestmark = pytest.mark.integration
MB = 1 << 20


@pytest.fixture
def member(owner_api: Api, shared_conninfo: str) -> Api:
    seed_template(shared_conninfo)
    owner_api.create_user(username="dev")
    return owner_api.as_user(owner_api.login("dev"))


@pytest.fixture
def seeded(member: Api, shared_conninfo: str) -> SeededAgent:
    return seed_agent(member, shared_conninfo)


@pytest.fixture
def agent(server: LiveServer, seeded: SeededAgent, tmp_path: Path) -> Iterator[StandInAgent]:
    with agent_in_thread(StandInAgent(server.url, seeded.token, str(tmp_path))) as running:
        yield running


def run(coro: Any, timeout: float = 240) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // MB):
            block = os.urandom(MB)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def test_100_mb_arrive_whole_and_in_order_while_a_slow_channel_on_the_same_connection_waits(
        server: LiveServer, member: Api, seeded: SeededAgent, agent: StandInAgent, tmp_path: Path) -> None:
    big, slow = tmp_path / "big", tmp_path / "slow"
    big_hash, slow_hash = random_file(big, 100 * MB), random_file(slow, 8 * MB)

    async def check() -> None:
        async with open_session(Client(server.url, member.token), seeded.agent_id) as session:
            slow_channel = await session.ssh.create_process(f"cat {slow}", encoding=None)
            slow_got, hurry = bytearray(), asyncio.Event()

            async def read_slowly() -> None:  # a reader that takes 4 KiB every 50 ms until told to hurry
                while chunk := await slow_channel.stdout.read(4096 if not hurry.is_set() else MB):
                    slow_got.extend(chunk)
                    if not hurry.is_set():
                        await asyncio.sleep(0.05)

            slow_reader = asyncio.create_task(read_slowly())
            fast = await session.ssh.create_process(f"cat {big}", encoding=None)
            digest, count = hashlib.sha256(), 0
            while chunk := await fast.stdout.read(MB):
                digest.update(chunk)
                count += len(chunk)
            assert (count, digest.hexdigest()) == (100 * MB, big_hash)
            assert not slow_reader.done() and len(slow_got) < 8 * MB  # the fast one finished first
            hurry.set()
            await slow_reader
            assert hashlib.sha256(slow_got).hexdigest() == slow_hash

    run(check())


def test_a_slow_reader_in_one_session_does_not_hold_up_another_session_to_the_same_agent(
        server: LiveServer, member: Api, seeded: SeededAgent, agent: StandInAgent, tmp_path: Path) -> None:
    big, slow = tmp_path / "big", tmp_path / "slow"
    big_hash, slow_hash = random_file(big, 20 * MB), random_file(slow, 8 * MB)
    client = Client(server.url, member.token)

    async def check() -> None:
        async with open_session(client, seeded.agent_id) as sleepy, open_session(client, seeded.agent_id) as busy:
            trickle = await sleepy.ssh.create_process(f"cat {slow}", encoding=None)
            first = await trickle.stdout.readexactly(4096)  # then nobody reads this session for a while
            result = await busy.ssh.run(f"cat {big}")
            assert isinstance(result.stdout, bytes)
            assert hashlib.sha256(result.stdout).hexdigest() == big_hash
            rest = await trickle.stdout.read()
            assert hashlib.sha256(first + rest).hexdigest() == slow_hash

    run(check())
    assert agent.sessions == 2


def test_a_marker_sent_through_a_session_never_reaches_the_relay_in_clear(
        server: LiveServer, member: Api, seeded: SeededAgent, tmp_path: Path) -> None:
    marker = b"MARKER-" + os.urandom(8).hex().encode()
    port = int(server.url.rsplit(":", 1)[1])
    with tapped("127.0.0.1", port) as tap, agent_in_thread(StandInAgent(tap.url, seeded.token, str(tmp_path))):
        async def talk() -> None:
            async with open_session(Client(tap.url, member.token), seeded.agent_id) as session:
                echo = await session.ssh.create_process(subsystem=ECHO, encoding=None)
                for _ in range(50):
                    echo.stdin.write(marker)
                    assert await echo.stdout.readexactly(len(marker)) == marker
                result = await session.ssh.run(f"echo {marker.decode()}", input=marker * 100)
                assert isinstance(result.stdout, bytes) and marker in result.stdout
        run(talk())
    seen = bytes(tap.to_server) + bytes(tap.to_clients)
    assert len(seen) > 100 * len(marker)  # the session went through the tap
    assert b"Upgrade: DERP" in tap.to_server or b"derp" in tap.to_server.lower()
    assert marker not in seen
    assert marker.hex().encode() not in seen


def test_a_user_cannot_reach_another_users_agent(
        server: LiveServer, owner_api: Api, member: Api, seeded: SeededAgent, agent: StandInAgent,
        shared_conninfo: str) -> None:
    owner_api.create_user(username="other")
    other = owner_api.as_user(owner_api.login("other"))
    theirs = seed_agent(other, shared_conninfo, name="theirs")
    StandInAgent(server.url, theirs.token, "/").register()  # their own agent is connected and pairable
    as_other = Client(server.url, other.token)

    async def attempt() -> None:
        with pytest.raises(OperatorError) as refused:  # the API will not pair them with dev's agent
            async with open_session(as_other, seeded.agent_id):
                pass
        assert "404" in str(refused.value)
        # Paired with their own agent, they address dev's agent's key directly: the relay delivers nothing.
        node, ssh_key = NodeKey.generate(), asyncssh.generate_private_key("ssh-ed25519")
        await asyncio.to_thread(pair, as_other, theirs.agent_id, node, ssh_key)
        relay = await connect_admitted(relay_url(server.url), node)
        streams = PeerStreams(relay)
        pump = asyncio.create_task(streams.run())
        sock = await streams.connect(agent.node.public)
        sock.sendall(b"SSH-2.0-intruder\r\n")
        await asyncio.sleep(2)
        pump.cancel()
        await relay.close()
        sock.close()
        assert agent.sessions == 0
        async with open_session(Client(server.url, member.token), seeded.agent_id):  # the owner gets through
            assert agent.sessions == 1

    run(attempt())


def test_when_the_agent_goes_away_the_session_ends_at_once(
        server: LiveServer, member: Api, seeded: SeededAgent, tmp_path: Path) -> None:
    async def check() -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(agent_in_thread(StandInAgent(server.url, seeded.token, str(tmp_path))))
            async with open_session(Client(server.url, member.token), seeded.agent_id) as session:
                assert (await session.ssh.run("echo up")).stdout == b"up\n"
                await asyncio.to_thread(stack.close)  # the agent's relay connection closes: PeerGone
                await asyncio.wait_for(session.ssh.wait_closed(), 10)
    run(check(), timeout=60)


def test_a_packet_out_of_sequence_resets_the_stream_instead_of_corrupting_it(
        server: LiveServer, member: Api, seeded: SeededAgent, agent: StandInAgent) -> None:
    async def check() -> bytes:
        node, ssh_key = NodeKey.generate(), asyncssh.generate_private_key("ssh-ed25519")
        pairing = await asyncio.to_thread(pair, Client(server.url, member.token), seeded.agent_id, node, ssh_key)
        agent_key = parse_hex_key(pairing.agent_node_key)
        relay = await connect_admitted(relay_url(server.url), node)
        await relay.send(agent_key, encode(Kind.OPEN, 0))
        await relay.send(agent_key, encode(Kind.DATA, 0, b"SSH-2.0-probe\r\n"))
        await relay.send(agent_key, encode(Kind.DATA, 2, b"skipped one"))
        try:
            while True:
                event = await relay.recv()
                if isinstance(event, Packet) and event.data[0] == Kind.RESET:
                    return event.data[HEADER.size:]
        finally:
            await relay.close()

    assert b"packet 2 arrived where 1 was due" in run(check(), timeout=30)
