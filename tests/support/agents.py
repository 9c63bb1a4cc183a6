"""Test helpers for workspace agents: a workspace whose latest build left a live agent, without terraform.

The template and its import are written straight into the database; the workspace is created
through the real API, and its build is finished with a real state file read by the real
extraction (provisioner.extract) and stored as a daemon's completed build would be.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from appliance.provisioner.extract import build_resources
from appliance.workspaces.resources import store
from tests.support.api import Api

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


def agent_state(token: str, **attrs: Any) -> bytes:
    agent = {"id": str(uuid.uuid4()), "os": "linux", "arch": "amd64", "token": token, "dir": "/home/dev",
             "env": {"GREETING": "hello"}, "startup_script": "echo ready", "connection_timeout": 30,
             "startup_script_timeout": 90, "troubleshooting_url": "https://wiki.example/agents",
             "metadata": METADATA, **attrs}
    return json.dumps({"resources": [{"mode": "managed", "type": "appliance_agent", "name": "main",
                                      "instances": [{"attributes": agent}]}]}).encode()


def finish_build(conninfo: str, build_id: str, state: bytes) -> None:
    """End a queued build as a daemon would: job completed, resources stored from its state."""
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        row = conn.execute("UPDATE provisioner_jobs SET started_at = now(), completed_at = now() WHERE id ="
                           " (SELECT job_id FROM workspace_builds WHERE id = %s) RETURNING id", (build_id,)).fetchone()
        assert row is not None
        store(conn, row["id"], build_resources(state))  # type: ignore[arg-type]  # a plain psycopg connection


def seed_agent(api: Api, conninfo: str, name: str = "dev", **attrs: Any) -> SeededAgent:
    """A workspace of `api`'s user, built and running with one agent (token known to the test)."""
    created = api.post("/api/v2/workspaces", json={"template": "agents", "name": name})
    assert created.status_code == 201, created.text
    workspace, token = created.json(), secrets.token_hex(16)
    finish_build(conninfo, workspace["latest_build"]["id"], agent_state(token, **attrs))
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT id FROM workspace_agents WHERE hashed_token = %s",
                           (hashlib.sha256(token.encode()).digest(),)).fetchone()
    assert row is not None
    return SeededAgent(workspace["id"], str(row[0]), token, workspace["latest_build"]["id"])


def node_key() -> str:
    return secrets.token_hex(32)
