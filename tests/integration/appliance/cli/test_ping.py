"""`appliance ping` and `appliance speedtest` against a live server, its relay and an agent paired by the API,
and what a developer reads when the workspace is stopped or its agent has not connected."""

from __future__ import annotations

import re
import subprocess
import time

import psycopg
import pytest

from tests.support.agents import SeededAgent
from tests.support.api import Api
from tests.support.cli import COMMAND, cli_env, run_cli
from tests.support.relay_agent import StandInAgent
from tests.support.server import LiveServer

pytestmark = pytest.mark.integration


def appliance(server: LiveServer, member: Api, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(server.url, member, *args)


def test_ping_reports_each_round_trip_and_that_the_path_is_the_relay(
        server: LiveServer, member: Api, agent: StandInAgent) -> None:
    result = appliance(server, member, "ping", "box", "-n", "3", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    pongs = [line for line in result.stdout.splitlines() if line.startswith("pong ")]
    assert len(pongs) == 3
    for line in pongs:
        assert "via DERP relay, never direct (region 999 Appliance Embedded Relay)" in line
        assert re.search(r" in \d+\.\d\d ms \(you to the relay \d+\.\d\d ms\)$", line), line
    assert "3 round trips to box: min " in result.stdout
    assert agent.sessions == 1


@pytest.mark.parametrize("direction", ["down", "up"])
def test_speedtest_reports_throughput_each_way(server: LiveServer, member: Api, agent: StandInAgent,
                                               direction: str) -> None:
    result = appliance(server, member, "speedtest", "box", "--seconds", "2", "--direction", direction)
    assert result.returncode == 0, result.stderr
    assert f"Speed test {direction} with box via DERP relay, never direct" in result.stdout
    total = re.search(rf"Total {direction}: ([\d.]+) Mbit/s \(([\d.]+) MB in", result.stdout)
    assert total is not None, result.stdout
    assert float(total.group(1)) > 0 and float(total.group(2)) > 0
    assert re.search(r"^\s+0\.00- 1\.\d\d s\s+[\d.]+ Mbit/s$", result.stdout, re.MULTILINE), result.stdout


def test_ping_of_a_workspace_whose_agent_has_not_connected_says_so(server: LiveServer, member: Api,
                                                                    seeded: SeededAgent) -> None:
    result = appliance(server, member, "ping", "box", "-n", "1")
    assert result.returncode != 0
    assert "has not connected yet" in result.stderr and "Traceback" not in result.stderr


def test_ping_of_a_stopped_workspace_says_to_start_it(server: LiveServer, member: Api, seeded: SeededAgent,
                                                      shared_conninfo: str) -> None:
    stopped = member.post(f"/api/v2/workspaces/{seeded.workspace_id}/builds", json={"transition": "stop"})
    assert stopped.status_code == 201, stopped.text
    with psycopg.connect(shared_conninfo) as conn:  # as a daemon finishing the stop would
        conn.execute("UPDATE provisioner_jobs SET started_at = now(), completed_at = now() WHERE id ="
                     " (SELECT job_id FROM workspace_builds WHERE id = %s)", (stopped.json()["id"],))
    result = appliance(server, member, "ping", "box", "-n", "1")
    assert result.returncode != 0
    assert "Workspace box is stopped" in result.stderr and "appliance start box" in result.stderr


def test_stopping_the_workspace_ends_a_running_ping_with_the_relays_reason(
        server: LiveServer, member: Api, seeded: SeededAgent, agent: StandInAgent) -> None:
    env = cli_env(server.url, member)
    with subprocess.Popen([*COMMAND, "ping", "box", "-n", "600", "--interval", "0.1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as pinging:
        assert pinging.stdout is not None and pinging.stderr is not None
        assert pinging.stdout.readline().startswith("pong 1 from box via DERP relay")
        stopped = member.post(f"/api/v2/workspaces/{seeded.workspace_id}/builds", json={"transition": "stop"})
        assert stopped.status_code == 201, stopped.text
        started = time.monotonic()
        code = pinging.wait(30)
        errors = pinging.stderr.read()
    assert time.monotonic() - started < 5  # the relay closes the session within a second or so, not at the end
    assert code != 0
    assert "The session to the workspace's agent ended: access revoked" in errors, errors
    assert "Traceback" not in errors
