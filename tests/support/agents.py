"""Test helpers for workspace agents.

Seeded (no terraform): the template and its import written straight into the database, the workspace
created through the real API, its build finished with a real state file read by the real extraction.
Built: a workspace of the test 'agent' template through the provisioner, and the agent run as a process.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from appliance.provisioner.extract import build_resources
from appliance.workspaces.resources import store
from tests.support.api import Api
from tests.support.workspaces import TEMPLATES, build_logs, push, wait_build, wait_version

METADATA = [{"key": "load", "display_name": "Load", "script": "cat /proc/loadavg", "interval": 5, "timeout": 2}]


@dataclass(frozen=True)
class SeededAgent:
    workspace_id: str
    agent_id: str
    token: str
    build_id: str


def seed_template(conninfo: str, name: str = "agents") -> None:
    """A template whose active version imported successfully (no terraform ran)."""
    digest = secrets.token_hex(32)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO files (hash, data) VALUES (%s, '')", (digest,))
        template = conn.execute("INSERT INTO templates (name) VALUES (%s) RETURNING id", (name,)).fetchone()
        job = conn.execute("INSERT INTO provisioner_jobs (type, timeout_seconds, started_at, completed_at)"
                           " VALUES ('template_version_import', 60, now(), now()) RETURNING id").fetchone()
        assert template is not None and job is not None
        version = conn.execute("INSERT INTO template_versions (template_id, number, file_hash, job_id)"
                               " VALUES (%s, 1, %s, %s) RETURNING id", (template[0], digest, job[0])).fetchone()
        assert version is not None
        conn.execute("UPDATE templates SET active_version_id = %s WHERE id = %s", (version[0], template[0]))


def seeded_member(owner_api: Api, conninfo: str, username: str = "dev") -> Api:
    """A member of a site with the seeded 'agents' template, logged in: whoever makes the seeded workspaces."""
    seed_template(conninfo)
    owner_api.create_user(username=username)
    return owner_api.as_user(owner_api.login(username))


def agent_state(token: str, apps: Sequence[dict[str, Any]] = (), **attrs: Any) -> bytes:
    """A state with one agent "main" (`attrs` override its attributes) and `apps` (appliance_app attributes)."""
    agent = {"id": str(uuid.uuid4()), "os": "linux", "arch": "amd64", "token": token, "dir": "/home/dev",
             "env": {"GREETING": "hello"}, "startup_script": "echo ready", "connection_timeout": 30,
             "startup_script_timeout": 90, "troubleshooting_url": "https://wiki.example/agents",
             "metadata": METADATA, **attrs}
    resources = [{"mode": "managed", "type": "appliance_agent", "name": "main", "instances": [{"attributes": agent}]}]
    resources += [{"mode": "managed", "type": "appliance_app", "name": app["slug"], "instances": [{"attributes": {
        "id": str(uuid.uuid4()), "agent_id": agent["id"], "display_name": None, "command": None, "share": "owner",
        "healthcheck": [], **app}}]} for app in apps]
    return json.dumps({"resources": resources}).encode()


def finish_build(conninfo: str, build_id: str, state: bytes) -> None:
    """End a queued build as a daemon would: job completed, resources stored from its state."""
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        row = conn.execute("UPDATE provisioner_jobs SET started_at = now(), completed_at = now() WHERE id ="
                           " (SELECT job_id FROM workspace_builds WHERE id = %s) RETURNING id", (build_id,)).fetchone()
        assert row is not None
        store(conn, row["id"], build_resources(state))  # type: ignore[arg-type]  # a plain psycopg connection


def seed_agent(api: Api, conninfo: str, name: str = "dev", apps: Sequence[dict[str, Any]] = (),
               **attrs: Any) -> SeededAgent:
    """A workspace of `api`'s user, built and running with one agent (token known to the test) and its `apps`."""
    created = api.post("/api/v2/workspaces", json={"template": "agents", "name": name})
    assert created.status_code == 201, created.text
    workspace, token = created.json(), secrets.token_hex(16)
    finish_build(conninfo, workspace["latest_build"]["id"], agent_state(token, apps, **attrs))
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT id FROM workspace_agents WHERE hashed_token = %s",
                           (hashlib.sha256(token.encode()).digest(),)).fetchone()
    assert row is not None
    return SeededAgent(workspace["id"], str(row[0]), token, workspace["latest_build"]["id"])


def node_key() -> str:
    return secrets.token_hex(32)


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


def package_argv(out: Path) -> list[str]:
    """`appliance agent package` of the checkout into `out`, cached in AGENT_CACHE (PyInstaller once per change)."""
    return [sys.executable, "-m", "appliance", "agent", "package", str(out), "--cache-dir", str(AGENT_CACHE)]
