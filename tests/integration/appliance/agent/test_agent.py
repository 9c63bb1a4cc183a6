"""The workspace agent as its own process against a real control plane and relay: lifecycle, startup log,
metadata, reconnecting after the relay restarts, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.agents import agent_events, agent_log, agent_process, agent_workspace, wait_agent
from tests.support.api import Api
from tests.support.postgres import free_port
from tests.support.server import LiveServer, live_server

pytestmark = pytest.mark.integration


def test_the_agent_reaches_ready_and_its_startup_log_shows_in_order_while_it_runs(
        owner: Api, agent_server: LiveServer, tmp_path: Path) -> None:
    script = "for i in $(seq 1 250); do echo line $i; done; printf '\\033[32mgreen\\033[0m\\n'; sleep 3; echo done"
    ws = agent_workspace(owner, "ready", script=script)
    assert wait_agent(owner, ws.agent_id, lambda a: True)["lifecycle_state"] == "created"
    with agent_process(agent_server.url, ws.token, tmp_path):
        # While the script sleeps, what it printed so far is already there: streamed, not sent at the end.
        starting = wait_agent(owner, ws.agent_id, lambda a: "green" in agent_log(owner, ws.agent_id), home=tmp_path)
        assert starting["lifecycle_state"] == "starting"
        assert "done" not in agent_log(owner, ws.agent_id)
        ready = wait_agent(owner, ws.agent_id, lambda a: a["lifecycle_state"] == "ready", home=tmp_path)
        assert ready["started_at"] and ready["ready_at"]
        assert agent_log(owner, ws.agent_id) == [*(f"line {i}" for i in range(1, 251)), "green", "done"]


def test_a_failing_startup_script_gives_start_error_and_says_its_status(
        owner: Api, agent_server: LiveServer, tmp_path: Path) -> None:
    ws = agent_workspace(owner, "failing", script="echo about to fail >&2; exit 3")
    with agent_process(agent_server.url, ws.token, tmp_path):
        wait_agent(owner, ws.agent_id, lambda a: a["lifecycle_state"] == "start_error", home=tmp_path)
    assert agent_log(owner, ws.agent_id) == ["about to fail", "The startup script exited with status 3."]


def test_a_script_past_its_timeout_shows_start_timeout_then_ready_when_it_ends(
        owner: Api, agent_server: LiveServer, tmp_path: Path) -> None:
    ws = agent_workspace(owner, "slow", script="sleep 4; echo finally", timeout="1")
    with agent_process(agent_server.url, ws.token, tmp_path):
        wait_agent(owner, ws.agent_id, lambda a: a["lifecycle_state"] == "start_timeout", home=tmp_path)
        wait_agent(owner, ws.agent_id, lambda a: a["lifecycle_state"] == "ready", home=tmp_path)
    assert agent_log(owner, ws.agent_id) == ["finally"]


def test_metadata_is_reported_and_kept_fresh(owner: Api, agent_server: LiveServer, tmp_path: Path) -> None:
    ws = agent_workspace(owner, "meta")
    with agent_process(agent_server.url, ws.token, tmp_path):
        first = wait_agent(owner, ws.agent_id, lambda a: any(m["value"] for m in a["metadata"]), home=tmp_path)
        [greeting] = first["metadata"]
        assert greeting["description"]["key"] == "greeting" and greeting["value"] == "hi from meta"
        assert greeting["error"] == ""
        # Interval 1 s: a later read shows a later collection.
        wait_agent(owner, ws.agent_id, lambda a: a["metadata"][0]["collected_at"] > greeting["collected_at"],
                   home=tmp_path)


def test_sigterm_reports_shutting_down_then_off_and_exits(owner: Api, agent_server: LiveServer,
                                                          tmp_path: Path) -> None:
    ws = agent_workspace(owner, "stopping")
    with agent_process(agent_server.url, ws.token, tmp_path) as agent:
        wait_agent(owner, ws.agent_id, lambda a: a["lifecycle_state"] == "ready", home=tmp_path)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
    assert wait_agent(owner, ws.agent_id, lambda a: True)["lifecycle_state"] == "off"
    states = [e["state"] for e in agent_events(tmp_path) if e["event"] == "lifecycle_changed"]
    assert states == ["starting", "ready", "shutting_down", "off"]


def test_the_agent_reconnects_on_its_own_after_the_relay_restarts(
        owner: Api, agent_db: str, site: dict[str, object], tmp_path: Path) -> None:
    """The relay's server (gateway and all) stops and starts again on the same port; the agent comes back."""
    ws = agent_workspace(owner, "reconnect")
    port = free_port()
    relay_site = {**site, "provisioner_daemons": 0}
    with ExitStack() as stack:
        first = ExitStack()
        relay = first.enter_context(live_server(agent_db, port=port, **relay_site))
        agent = stack.enter_context(agent_process(relay.url, ws.token, tmp_path))
        wait_agent(owner, ws.agent_id, lambda a: a["status"] == "connected", home=tmp_path)
        assert _events(tmp_path, "relay_connected") == 1
        # A developer's session open across the restart ends with a message, not a hang or a traceback.
        held = _cli(relay.url, owner, "ping", "reconnect", "-n", "600", "--interval", "0.2", background=True)
        assert isinstance(held, subprocess.Popen)
        time.sleep(2)
        first.close()
        _, errors = held.communicate(timeout=30)
        assert held.returncode != 0 and "Traceback" not in errors and "relay" in errors.lower(), errors
        wait_for(lambda: _events(tmp_path, "relay_disconnected") >= 1, tmp_path)
        stack.enter_context(live_server(agent_db, port=port, **relay_site))
        wait_for(lambda: _events(tmp_path, "relay_connected") == 2, tmp_path, timeout=90)
        wait_agent(owner, ws.agent_id, lambda a: a["status"] == "connected", home=tmp_path)
        assert agent.poll() is None, "the agent kept running across the restart"
        # ...and the next one goes through the agent's new relay connection.
        again = _cli(relay.url, owner, "ping", "reconnect", "-n", "2", "--interval", "0.1")
        assert isinstance(again, subprocess.CompletedProcess)
        assert again.returncode == 0 and again.stdout.count("via DERP relay, never direct") == 2, again.stderr


def _cli(url: str, api: Api, *args: str, background: bool = False
         ) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {"APPLIANCE_URL": url, "APPLIANCE_SESSION_TOKEN": api.token or ""}
    command = [sys.executable, "-m", "appliance", *args]
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


def _events(home: Path, name: str) -> int:
    return sum(1 for event in agent_events(home) if event["event"] == name)


def wait_for(condition: Callable[[], bool], home: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, (home / "agent.log").read_text()[-4000:]
        time.sleep(0.2)


def test_sigterm_stops_the_agent_within_seconds_when_the_control_plane_is_gone(
        owner: Api, agent_db: str, site: dict[str, object], tmp_path: Path) -> None:
    """podman stops a container 10 s after SIGTERM: an agent retrying its last reports must not be killed."""
    ws = agent_workspace(owner, "orphan")
    with ExitStack() as stack:
        server = ExitStack()
        control = server.enter_context(live_server(agent_db, **{**site, "provisioner_daemons": 0}))
        agent = stack.enter_context(agent_process(control.url, ws.token, tmp_path))
        wait_agent(owner, ws.agent_id, lambda a: a["lifecycle_state"] == "ready", home=tmp_path)
        server.close()
        started = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        assert time.monotonic() - started < 8, (tmp_path / "agent.log").read_text()[-3000:]
    assert [e["state"] for e in agent_events(tmp_path) if e["event"] == "lifecycle_not_reported"] == \
        ["shutting_down", "off"]
