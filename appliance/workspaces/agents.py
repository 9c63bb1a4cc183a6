"""Workspace agents: who a token belongs to, and what a live agent reports (relay key, lifecycle, logs, metadata).

An agent token is live only while its agent belongs to the latest build of a workspace that is not
deleted, and that build starts the workspace: a stopped, deleted or rebuilt workspace's agent is
refused (401), so an old container cannot keep reporting or reach the relay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from appliance.auth.rbac import Resource, ResourceType
from appliance.db.database import Connection, Row
from appliance.errors import Conflict, InvalidInput, NotFound, TooLarge, Unauthorized
from appliance.pki.ssh_ca import InvalidSshKey, parse_public_key, public_key_line
from appliance.sdk.agents import (
    AGENT_TOKEN_ENV,
    AgentApp,
    AgentLogLine,
    AgentManifest,
    AgentMetadataDescription,
    DerpMap,
    LifecycleState,
    MetadataResult,
)
from appliance.workspaces.agent_status import ConnectionTimes

LOGS_CHANNEL = "workspace_agent_logs"  # NOTIFY payload: the id of an agent with new startup log lines
AGENT_KEY_LIFETIME = timedelta(hours=24)  # an agent registers again at half-life
# Coder's cap: a startup script that prints without end cannot fill the database (whoever holds the
# workspace holds its agent token).
MAX_LOG_CHARS = 1 << 20
_ENDED_STARTUP = ("ready", "start_timeout", "start_error")  # Coder stamps ready_at for each of these

_AGENT_SELECT = (
    "SELECT a.*, w.id AS workspace_id, w.name AS workspace_name, w.owner_id, u.username AS owner_name,"
    " b.build_number,"
    " (w.deleted_at IS NULL AND b.transition = 'start' AND b.build_number ="
    "  (SELECT max(build_number) FROM workspace_builds WHERE workspace_id = w.id)) AS is_live"
    " FROM workspace_agents a JOIN workspace_resources r ON r.id = a.resource_id"
    " JOIN workspace_builds b ON b.job_id = r.job_id JOIN workspaces w ON w.id = b.workspace_id"
    " JOIN users u ON u.id = w.owner_id")


@dataclass(frozen=True)
class Agent:
    id: UUID
    name: str
    workspace_id: UUID
    workspace_name: str
    owner_id: UUID
    owner_name: str
    is_live: bool
    directory: str
    startup_script: str
    startup_script_timeout_seconds: int
    env: dict[str, str]
    metadata: list[dict[str, Any]]
    troubleshooting_url: str
    lifecycle_state: LifecycleState
    started_at: datetime | None
    ready_at: datetime | None
    ssh_host_key: str
    version: str
    times: ConnectionTimes

    @property
    def resource(self) -> Resource:
        return Resource(ResourceType.WORKSPACE, owner_id=self.owner_id)

    @property
    def target(self) -> str:
        """How the audit log names the workspace: owner/name."""
        return f"{self.owner_name}/{self.workspace_name}"

    @property
    def descriptions(self) -> list[AgentMetadataDescription]:
        return [AgentMetadataDescription.model_validate(m) for m in self.metadata]

    @classmethod
    def from_row(cls, row: Row) -> Agent:
        return cls(row["id"], row["name"], row["workspace_id"], row["workspace_name"], row["owner_id"],
                   row["owner_name"], bool(row["is_live"]), row["directory"], row["startup_script"],
                   row["startup_script_timeout_seconds"], dict(row["env"]), list(row["metadata"]),
                   row["troubleshooting_url"], row["lifecycle_state"], row["started_at"], row["ready_at"],
                   row["ssh_host_key"], row["version"], ConnectionTimes.from_row(row))


def _newest(conn: Connection, where: str, value: object) -> Agent | None:
    row = conn.execute(_AGENT_SELECT + " WHERE " + where + " ORDER BY b.build_number DESC LIMIT 1",
                       (value,)).fetchone()
    return Agent.from_row(row) if row else None


def authenticate_agent(conn: Connection, token: str | None) -> Agent:
    """The live agent this token belongs to; 401 with what to do otherwise."""
    if not token:
        raise Unauthorized("No agent token.", f"Send 'Authorization: Bearer <agent token>': the init script "
                           f"exports it as ${AGENT_TOKEN_ENV}.")
    agent = _newest(conn, "a.hashed_token = %s", hashlib.sha256(token.encode()).digest())
    if agent is None:
        raise Unauthorized("The agent token is not known to this appliance.",
                           "The token comes from the workspace's appliance_agent resource: restart the "
                           "workspace so its agent gets the token of its current build.")
    if not agent.is_live:
        raise Unauthorized(f"The agent token of workspace {agent.target} is no longer live: the workspace is "
                           "stopped, deleted or was rebuilt.",
                           "The agent should exit; starting the workspace runs a new agent with a live token.")
    return agent


def find_agent(conn: Connection, ref: str) -> Agent:
    """Any agent by id, live or not (the caller decides who may see it)."""
    try:
        agent = _newest(conn, "a.id = %s", UUID(ref))
    except ValueError:
        agent = None
    if agent is None:
        raise agent_not_found(ref)
    return agent


def agents_of_newest_build(conn: Connection, owner: str, workspace: str) -> list[Agent]:
    """The agents of the newest build of owner/workspace that has any (not live when the workspace stopped)."""
    rows = conn.execute(_AGENT_SELECT + " WHERE u.username = %s AND w.name = %s AND w.deleted_at IS NULL"
                        " ORDER BY b.build_number DESC, a.name", (owner, workspace)).fetchall()
    agents = [Agent.from_row(r) for r in rows]
    newest = rows[0]["build_number"] if rows else None
    return [a for a, r in zip(agents, rows, strict=True) if r["build_number"] == newest]


def agent_not_found(ref: str) -> NotFound:
    return NotFound(f"Workspace agent {ref!r} does not exist.",
                    "Agent ids are listed under a workspace's resources (`appliance list`, GET /api/v2/workspaces/ID).")


def manifest(agent: Agent, derp: DerpMap, ssh_user_ca: str, apps: list[AgentApp]) -> AgentManifest:
    return AgentManifest(
        agent_id=str(agent.id), agent_name=agent.name, workspace_id=str(agent.workspace_id),
        workspace_name=agent.workspace_name, owner_name=agent.owner_name, directory=agent.directory,
        env=agent.env, startup_script=agent.startup_script,
        startup_script_timeout_seconds=agent.startup_script_timeout_seconds,
        connection_timeout_seconds=agent.times.connection_timeout_seconds, metadata=agent.descriptions,
        derp_map=derp, ssh_user_ca=ssh_user_ca, apps=apps)


def node_key_bytes(hex_key: str) -> bytes:
    """A node key the sdk model already checked is 64 lowercase hex digits, as the 32 bytes stored."""
    return bytes.fromhex(hex_key)


def normalised_ssh_key(line: str, field: str) -> str:
    try:
        return public_key_line(parse_public_key(line))
    except InvalidSshKey as err:
        raise InvalidInput(f"Invalid {field}: {err}.",
                           "Send the public key as one OpenSSH line, such as the content of a .pub file "
                           "('ssh-ed25519 AAAA... comment').", field=field) from err


def register_relay(conn: Connection, agent: Agent, node_key: bytes, ssh_host_key: str, version: str) -> datetime:
    """Vouch for the agent's relay key (replacing its old one) and keep its SSH host key; returns the expiry."""
    host_key = normalised_ssh_key(ssh_host_key, "ssh_host_key")
    conn.execute("SELECT id FROM workspace_agents WHERE id = %s FOR UPDATE", (agent.id,))  # one registration at a time
    conn.execute("DELETE FROM relay_peers WHERE agent_id = %s AND kind = 'agent' AND node_key <> %s",
                 (agent.id, node_key))
    row = conn.execute(
        "INSERT INTO relay_peers (node_key, kind, agent_id, workspace_id, expires_at)"
        " VALUES (%s, 'agent', %s, %s, now() + %s)"
        " ON CONFLICT (node_key) DO UPDATE SET expires_at = EXCLUDED.expires_at"
        " WHERE relay_peers.kind = 'agent' AND relay_peers.agent_id = EXCLUDED.agent_id RETURNING expires_at",
        (node_key, agent.id, agent.workspace_id, AGENT_KEY_LIFETIME)).fetchone()
    if row is None:
        raise Conflict("This node key is already registered for another relay peer.",
                       "Generate a new node key: each agent and each client pairing needs its own.",
                       field="node_key")
    conn.execute("UPDATE workspace_agents SET ssh_host_key = %s, version = %s WHERE id = %s",
                 (host_key, version, agent.id))
    expires_at: datetime = row["expires_at"]
    return expires_at


def report_lifecycle(conn: Connection, agent: Agent, state: LifecycleState, changed_at: datetime) -> None:
    """Record a lifecycle change; starting stamps started_at, the end of the startup script ready_at."""
    conn.execute(
        "UPDATE workspace_agents SET lifecycle_state = %(state)s, lifecycle_changed_at = %(at)s,"
        " started_at = CASE WHEN %(state)s = 'starting' THEN %(at)s ELSE started_at END,"
        " ready_at = CASE WHEN %(state)s = ANY(%(ended)s) THEN %(at)s ELSE ready_at END WHERE id = %(id)s",
        {"state": state, "at": changed_at, "ended": list(_ENDED_STARTUP), "id": agent.id})


def append_logs(conn: Connection, agent: Agent, lines: list[AgentLogLine]) -> None:
    """Store a batch of startup log lines in the order sent; followers are woken by NOTIFY."""
    if not lines:
        return
    row = conn.execute("SELECT coalesce(sum(length(output)), 0) AS stored FROM workspace_agent_logs"
                       " WHERE agent_id = %s", (agent.id,)).fetchone()
    if row is not None and row["stored"] + sum(len(line.output) for line in lines) > MAX_LOG_CHARS:
        raise TooLarge(f"The startup log of agent {agent.name} in {agent.target} would pass "
                       f"{MAX_LOG_CHARS >> 20} MiB; these lines were not stored.",
                       "Make the startup script print less (redirect verbose output to a file in the workspace); "
                       "the agent stops sending its log until the next start.")
    conn.execute(
        "INSERT INTO workspace_agent_logs (agent_id, created_at, level, output)"
        " SELECT %s, t.created_at, t.level, t.output FROM unnest(%s::timestamptz[], %s::text[], %s::text[])"
        " WITH ORDINALITY AS t(created_at, level, output, n) ORDER BY t.n",
        (agent.id, [line.created_at for line in lines], [line.level for line in lines],
         [line.output for line in lines]))
    conn.execute("SELECT pg_notify(%s, %s)", (LOGS_CHANNEL, str(agent.id)))


def logs_after(conn: Connection, agent_id: UUID, after: int, limit: int = 1000) -> list[Row]:
    return conn.execute("SELECT id, created_at, level, output FROM workspace_agent_logs"
                        " WHERE agent_id = %s AND id > %s ORDER BY id LIMIT %s", (agent_id, after, limit)).fetchall()


def save_metadata(conn: Connection, agent: Agent, results: list[MetadataResult]) -> None:
    """Keep the latest result of each metadata block; a key the template does not declare is refused."""
    declared = {m["key"] for m in agent.metadata}
    for index, result in enumerate(results):
        if result.key not in declared:
            raise InvalidInput(f"Metadata key {result.key!r} is not declared by the workspace's template.",
                               f"Declared keys: {', '.join(sorted(declared)) or '(none)'}.",
                               field=f"results.{index}.key")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO workspace_agent_metadata (agent_id, key, value, error, collected_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (agent_id, key) DO UPDATE SET value = EXCLUDED.value,"
            " error = EXCLUDED.error, collected_at = EXCLUDED.collected_at",
            [(agent.id, r.key, r.value, r.error, r.collected_at) for r in results])


def metadata_results(conn: Connection, agent_id: UUID) -> dict[str, Row]:
    rows = conn.execute("SELECT key, value, error, collected_at FROM workspace_agent_metadata WHERE agent_id = %s",
                        (agent_id,)).fetchall()
    return {row["key"]: row for row in rows}

