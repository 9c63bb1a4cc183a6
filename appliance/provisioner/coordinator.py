"""The control plane's side of a job: hand a daemon everything it needs, then record what it produced.

Both in-process daemons and external ones (through /api/v2/provisionerd) go through these
functions, so a job is run, saved and finished the same way wherever terraform runs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from appliance.auth.users import find_user
from appliance.db.database import Connection, Row
from appliance.provisioner import extract, jobs
from appliance.templates import service as templates
from appliance.workspaces import service as workspaces

# What the agent's init script fetches and runs; the relay issue ships the agent itself.
AGENT_SCRIPT = """#!/bin/sh
# Appliance agent bootstrap: fetch the agent from the control plane and run it.
set -eu
BINARY_URL="${ACCESS_URL}bin/appliance-agent-linux-amd64"
until curl -fsSL --cacert /etc/appliance/ca.pem -o /tmp/appliance-agent "$BINARY_URL"; do sleep 30; done
chmod +x /tmp/appliance-agent
exec /tmp/appliance-agent
"""


@dataclass(frozen=True)
class JobSpec:
    """A claimed job as a daemon runs it: the template source, provider env and the prior state."""

    id: UUID
    type: jobs.JobType
    timeout_seconds: int
    transition: str
    env: dict[str, str]
    source: bytes
    state: bytes | None
    secrets: list[str]
    # The control plane decides how often a daemon must beat: a quarter of its heartbeat timeout.
    heartbeat_seconds: float = 10.0

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "type": self.type.value, "timeout_seconds": self.timeout_seconds,
                "transition": self.transition, "env": self.env,
                "source": base64.b64encode(self.source).decode(),
                "state": base64.b64encode(self.state).decode() if self.state is not None else None,
                "secrets": self.secrets, "heartbeat_seconds": self.heartbeat_seconds}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        state = data.get("state")
        return cls(UUID(data["id"]), jobs.JobType(data["type"]), int(data["timeout_seconds"]), data["transition"],
                   dict(data["env"]), base64.b64decode(data["source"]),
                   base64.b64decode(state) if state is not None else None, list(data.get("secrets", [])),
                   float(data.get("heartbeat_seconds", 10.0)))


def parameter_env(name: str) -> str:
    return "APPLIANCE_PARAMETER_" + hashlib.sha256(name.encode()).hexdigest()


def _source(conn: Connection, file_hash: str) -> bytes:
    row = conn.execute("SELECT data FROM files WHERE hash = %s", (file_hash,)).fetchone()
    assert row is not None
    return bytes(row["data"])


def _common_env(access_url: str, template: templates.Template, version: templates.Version) -> dict[str, str]:
    return {"APPLIANCE_ACCESS_URL": access_url.rstrip("/") + "/",
            "APPLIANCE_WORKSPACE_TEMPLATE_ID": str(template.id),
            "APPLIANCE_WORKSPACE_TEMPLATE_NAME": template.name,
            "APPLIANCE_WORKSPACE_TEMPLATE_VERSION": version.name,
            "APPLIANCE_AGENT_SCRIPT_linux_amd64": AGENT_SCRIPT,
            "APPLIANCE_AGENT_SCRIPT_linux_arm64": AGENT_SCRIPT.replace("amd64", "arm64")}


def _import_spec(conn: Connection, row: Row, access_url: str) -> JobSpec:
    version = templates.version_for_job(conn, row["id"])
    assert version is not None
    template = templates.find_template(conn, str(version.template_id))
    env = {**_common_env(access_url, template, version), "APPLIANCE_WORKSPACE_TRANSITION": "start"}
    return JobSpec(row["id"], jobs.JobType.IMPORT, row["timeout_seconds"], "start", env,
                   _source(conn, version.file_hash), None, [])


def _build_spec(conn: Connection, row: Row, access_url: str) -> JobSpec:
    build = workspaces.build_for_job(conn, row["id"])
    assert build is not None
    ws = conn.execute("SELECT * FROM workspaces WHERE id = %s", (build.workspace_id,)).fetchone()
    assert ws is not None
    version = templates.version_by_id(conn, build.template_version_id)
    template = templates.find_template(conn, str(version.template_id))
    owner = find_user(conn, str(ws["owner_id"]))
    assert owner is not None
    env = {**_common_env(access_url, template, version),
           "APPLIANCE_WORKSPACE_ID": str(ws["id"]), "APPLIANCE_WORKSPACE_NAME": ws["name"],
           "APPLIANCE_WORKSPACE_TRANSITION": build.transition, "APPLIANCE_WORKSPACE_BUILD_ID": str(build.id),
           "APPLIANCE_WORKSPACE_OWNER_ID": str(owner.id), "APPLIANCE_WORKSPACE_OWNER_NAME": owner.username,
           "APPLIANCE_WORKSPACE_OWNER_EMAIL": owner.email,
           "APPLIANCE_WORKSPACE_OWNER_GROUPS": json.dumps(sorted(owner.roles)),
           "APPLIANCE_WORKSPACE_OWNER_SSH_PUBLIC_KEY": ""}
    env.update({parameter_env(name): value for name, value in build.parameters.items()})
    state = workspaces.previous_state(conn, build)
    return JobSpec(row["id"], jobs.JobType.BUILD, row["timeout_seconds"], build.transition, env,
                   _source(conn, version.file_hash), state, extract.agent_tokens(state or b""))


def acquire(conn: Connection, daemon_id: UUID, tags: dict[str, str], access_url: str,
            heartbeat_timeout: timedelta) -> JobSpec | None:
    """Claim the next job for a daemon (after failing jobs whose daemons went silent)."""
    jobs.reap(conn, heartbeat_timeout)
    row = jobs.acquire(conn, daemon_id, tags)
    if row is None:
        return None
    jobs.append_logs(conn, row["id"], [("Setting up", "info", "Job claimed by a provisioner daemon.")])
    spec = (_import_spec(conn, row, access_url) if row["type"] == jobs.JobType.IMPORT.value
            else _build_spec(conn, row, access_url))
    return dataclasses.replace(spec, heartbeat_seconds=max(0.5, heartbeat_timeout.total_seconds() / 4))


def save_state(conn: Connection, job_id: UUID, daemon_id: UUID, state: bytes) -> bool:
    """Keep the state terraform has written so far; False if the job is no longer this daemon's."""
    if not jobs.is_running_on(conn, job_id, daemon_id):
        return False
    workspaces.save_state(conn, job_id, state)
    return True


def complete_import(conn: Connection, job_id: UUID, daemon_id: UUID, plan: dict[str, Any]) -> None:
    version = templates.version_for_job(conn, job_id)
    if version is None or jobs.finish(conn, job_id, daemon_id) is None:
        return
    parameters, agents = extract.template_summary(plan)
    templates.complete_import(conn, version, parameters, agents)


def _store_resources(conn: Connection, job_id: UUID, state: bytes) -> None:
    for resource in extract.build_resources(state):
        row = conn.execute(
            "INSERT INTO workspace_resources (job_id, address, type, name, daily_cost, metadata)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (job_id, resource.address, resource.type, resource.name, resource.daily_cost,
             Jsonb(resource.metadata))).fetchone()
        assert row is not None
        for agent in resource.agents:
            agent_row = conn.execute(
                "INSERT INTO workspace_agents (terraform_id, resource_id, name, os, arch, directory, startup_script,"
                " env, hashed_token) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (agent.terraform_id, row["id"], agent.name, agent.os, agent.arch, agent.directory,
                 agent.startup_script, Jsonb(agent.env), agent.hashed_token)).fetchone()
            assert agent_row is not None
            for app in agent.apps:
                conn.execute("INSERT INTO workspace_apps (agent_id, slug, display_name, url, command, healthcheck)"
                             " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                             (agent_row["id"], app["slug"], app["display_name"], app["url"], app["command"],
                              Jsonb(app["healthcheck"])))


def complete_build(conn: Connection, job_id: UUID, daemon_id: UUID, state: bytes) -> None:
    build = workspaces.build_for_job(conn, job_id)
    if build is None or not save_state(conn, job_id, daemon_id, state):
        return
    if jobs.finish(conn, job_id, daemon_id) is None:
        return
    _store_resources(conn, job_id, state)
    if build.transition == "delete":
        workspaces.mark_deleted(conn, build)


def fail(conn: Connection, job_id: UUID, daemon_id: UUID, error: str, state: bytes | None) -> None:
    """End a job as failed, keeping whatever state terraform wrote before it failed."""
    saved = (state is not None and workspaces.build_for_job(conn, job_id) is not None
             and save_state(conn, job_id, daemon_id, state))
    if jobs.finish(conn, job_id, daemon_id, error or "The job failed.") is not None and saved and state:
        _store_resources(conn, job_id, state)
