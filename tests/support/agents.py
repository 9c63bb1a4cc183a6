"""Test helpers for the workspace agent: a workspace with an agent, the agent run as a process, waits on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.api import Api
from tests.support.workspaces import TEMPLATES, build_logs, push, wait_build, wait_version

AGENT_TEMPLATE = TEMPLATES / "agent"


@dataclass(frozen=True)
class AgentWorkspace:
    workspace_id: str
    agent_id: str
    token: str


def agent_workspace(api: Api, name: str, **parameters: str) -> AgentWorkspace:
    """A running workspace of the test 'agent' template; its agent's id and token (read from the build's state)."""
    if api.get("/api/v2/templates/agent").status_code == 404:
        version = push(api, AGENT_TEMPLATE, "agent")
        assert wait_version(api, "agent", version["id"])["job"]["status"] == "succeeded"
    created = api.post("/api/v2/workspaces", json={"template": "agent", "name": name, "parameters": parameters})
    assert created.status_code == 201, created.text
    build = wait_build(api, created.json()["latest_build"]["id"])
    assert build["status"] == "running", build_logs(api, build["id"])
    resource = next(r for r in build["resources"] if r["type"] == "appliance_agent")
    state = api.get(f"/api/v2/workspacebuilds/{build['id']}/state").json()
    token = next(r for r in state["resources"] if r["type"] == "appliance_agent")["instances"][0]["attributes"]["token"]
    return AgentWorkspace(created.json()["id"], resource["agents"][0]["id"], token)


@contextmanager
def agent_process(url: str, token: str, home: Path, *, command: Sequence[str] | None = None,
                  env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """The agent as its own process (`python -m appliance.agent` unless `command`), logging to home/agent.log."""
    home.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "APPLIANCE_AGENT_URL": url, "APPLIANCE_AGENT_TOKEN": token, "HOME": str(home),
                   **(env or {})}
    with (home / "agent.log").open("wb") as log:
        process = subprocess.Popen(list(command or [sys.executable, "-m", "appliance.agent"]), env=environment,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    try:
        yield process
    finally:
        # SIGTERM first: the executable's bootloader passes it on to the agent; SIGKILL would orphan the agent.
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def agent_events(home: Path) -> list[dict[str, Any]]:
    """The agent's JSON log lines (its container log), parsed."""
    lines = (home / "agent.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def wait_agent(api: Api, agent_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60.0,
               home: Path | None = None) -> dict[str, Any]:
    """GET the agent until `until` holds; the agent's log in the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        agent: dict[str, Any] = api.get(f"/api/v2/workspaceagents/{agent_id}").json()
        if until(agent):
            return agent
        if time.monotonic() > deadline:
            log = (home / "agent.log").read_text()[-4000:] if home else ""
            raise AssertionError(f"agent never got there: {agent}\n{log}")
        time.sleep(0.2)


def agent_log(api: Api, agent_id: str) -> list[str]:
    return [line["output"] for line in api.get(f"/api/v2/workspaceagents/{agent_id}/logs").json()["logs"]]


AGENT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "agent"  # beside the provider's .cache/provider
