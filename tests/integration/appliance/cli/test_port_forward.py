"""`appliance port-forward` against a live server, its relay and an agent paired by the API: HTTP and a
WebSocket carried to servers in the workspace (the stand-in agent's loopback), a slow forward beside a fast
one, a port nothing listens on, a local port in use, and the session ending under it."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.support.agents import SeededAgent
from tests.support.api import Api
from tests.support.cli import COMMAND, cli_env, run_cli
from tests.support.loopback_servers import GREETING, http_server, tcp_server, websocket_server
from tests.support.postgres import free_port
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer

pytestmark = pytest.mark.integration

BULK = 20 << 20  # what the fast forward moves
BURST = 4 << 20  # what the slow one's server pushes at a client that does not read yet


def appliance(server: LiveServer, member: Api, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(server.url, member, *args)


@contextmanager
def forwarding(server: LiveServer, member: Api, *specs: str) -> Iterator[subprocess.Popen[str]]:
    """`appliance port-forward box --tcp ...` running, once it says it forwards; Ctrl-C at the end."""
    args = [arg for spec in specs for arg in ("--tcp", spec)]
    process = subprocess.Popen([*COMMAND, "port-forward", "box", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=cli_env(server.url, member))
    assert process.stdout is not None
    try:
        lines = []
        while not any("Press Ctrl-C" in line for line in lines):
            line = process.stdout.readline()
            assert line, f"port-forward ended early: {process.communicate(timeout=10)}"
            lines.append(line)
        assert sum(line.startswith("Forwarding 127.0.0.1:") for line in lines) == len(specs), lines
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait(15)


def test_http_and_a_websocket_reach_servers_in_the_workspace_and_a_dead_port_spoils_nothing(
        server: LiveServer, member: Api, agent: StandInAgent) -> None:
    local_http, local_ws, local_dead, dead = free_port(), free_port(), free_port(), free_port()
    with http_server() as http_port, websocket_server() as ws_port, \
            forwarding(server, member, f"{local_http}:{http_port}", f"127.0.0.1:{local_ws}:{ws_port}",
                       f"{local_dead}:{dead}") as forward:
        with socket.create_connection(("127.0.0.1", local_dead), timeout=10) as refused:
            assert refused.recv(1) == b""  # closed at once: nothing listens on that port in the workspace
        with urllib.request.urlopen(f"http://127.0.0.1:{local_http}/", timeout=10) as response:
            assert response.read() == GREETING
        assert asyncio.run(_websocket_round_trip(local_ws)) == "echo: marker-7731"
        with urllib.request.urlopen(f"http://127.0.0.1:{local_http}/again", timeout=10) as response:
            assert response.read() == GREETING  # each connection its own channel; the dead one broke nothing
        forward.send_signal(signal.SIGINT)
        assert forward.wait(15) == 0
        assert forward.stderr is not None
        errors = forward.stderr.read()
    assert f"port {dead} in the workspace: connection refused (nothing listens there)" in errors, errors
    assert "Traceback" not in errors and "Stopped forwarding." in errors


async def _websocket_round_trip(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
        await ws.send_str("marker-7731")
        reply = await ws.receive(timeout=10)
        return str(reply.data)


def _burst_then_trickle(conn: socket.socket) -> None:
    """A slow server: a burst its client does not read yet (the forward's windows fill), then a byte a second."""
    conn.sendall(b"s" * BURST)
    while True:
        conn.sendall(b".")
        time.sleep(1.0)


def _bulk(conn: socket.socket) -> None:
    block = b"f" * (1 << 20)
    for _ in range(BULK // len(block)):
        conn.sendall(block)


def test_a_stalled_slow_forward_does_not_hold_up_a_fast_one(server: LiveServer, member: Api,
                                                             agent: StandInAgent) -> None:
    local_slow, local_fast = free_port(), free_port()
    with tcp_server(_burst_then_trickle) as slow_port, tcp_server(_bulk) as fast_port, \
            forwarding(server, member, f"{local_slow}:{slow_port}", f"{local_fast}:{fast_port}"), \
            socket.create_connection(("127.0.0.1", local_slow), timeout=30) as slow:
        slow.recv(1)  # the slow server is sending; from here this client reads nothing until the fast one is done
        received = 0
        with socket.create_connection(("127.0.0.1", local_fast), timeout=30) as fast:
            while chunk := fast.recv(1 << 16):
                received += len(chunk)
        assert received == BULK
        # ...and the slow forward is still open, its burst held back intact, its trickle still coming.
        got = 1
        while got < BURST + 1:
            chunk = slow.recv(1 << 16)
            assert chunk, "the slow forward closed"
            got += len(chunk)
        assert got >= BURST + 1


def test_a_local_port_in_use_fails_at_start_naming_it(server: LiveServer, member: Api,
                                                      agent: StandInAgent) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = appliance(server, member, "port-forward", "box", "--tcp", f"{port}:8080")
    assert result.returncode != 0
    assert f"Cannot listen on 127.0.0.1:{port}: the port is already in use." in result.stderr
    assert "Traceback" not in result.stderr
    assert agent.sessions == 0  # it failed before pairing


def test_a_bad_tcp_value_is_refused_naming_the_flag(server: LiveServer, member: Api) -> None:
    result = appliance(server, member, "port-forward", "box", "--tcp", "8000-8005:9000-9003")
    assert result.returncode == 2
    assert "Invalid value for '--tcp'" in result.stderr and "the ranges differ in length" in result.stderr


def test_without_a_connected_agent_wait_no_fails_at_once_and_the_default_waits(
        server: LiveServer, member: Api, seeded: SeededAgent, tmp_path: Path) -> None:
    refused = appliance(server, member, "port-forward", "box", "--tcp", f"{free_port()}:80", "--wait", "no")
    assert refused.returncode != 0
    assert "The agent of workspace box is connecting, not connected yet." in refused.stderr
    assert "without '--wait no'" in refused.stderr and "Traceback" not in refused.stderr
    local = free_port()
    with http_server() as http_port:
        args = [*COMMAND, "port-forward", "box", "--tcp", f"{local}:{http_port}"]
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env(server.url, member)) as waiting:
            assert waiting.stderr is not None and waiting.stdout is not None
            assert "not connected yet; waiting..." in waiting.stderr.readline()
            with agent_in_thread(StandInAgent(server.url, seeded.token, str(tmp_path))):
                assert waiting.stdout.readline().startswith(f"Forwarding 127.0.0.1:{local} -> port {http_port}")
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as response:
                    assert response.read() == GREETING
                waiting.send_signal(signal.SIGINT)
                assert waiting.wait(15) == 0


def test_stopping_the_workspace_ends_the_forward_with_the_reason(server: LiveServer, member: Api,
                                                                 seeded: SeededAgent, agent: StandInAgent) -> None:
    with forwarding(server, member, f"{free_port()}:{free_port()}") as forward:
        stopped = member.post(f"/api/v2/workspaces/{seeded.workspace_id}/builds", json={"transition": "stop"})
        assert stopped.status_code == 201, stopped.text
        code = forward.wait(30)
        assert forward.stderr is not None
        errors = forward.stderr.read()
    assert code != 0
    assert "The session to the workspace's agent ended: access revoked" in errors, errors
    assert "Traceback" not in errors

