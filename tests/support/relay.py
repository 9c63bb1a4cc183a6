"""Relay test helpers: users, workspaces and agents made in SQL, keys vouched in relay_peers, a relay to dial."""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from appliance.relay.keys import NodeKey

LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class Agent:
    id: str
    workspace_id: str
    owner_id: str
    api_key_id: str  # the owner's API key, what vouches for the owner's client keys


def _one(conn: psycopg.Connection[tuple[object, ...]], statement: str, *params: object) -> str:
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return str(row[0])


def make_agent(conninfo: str) -> Agent:
    """A user (with an API key), a template, a workspace with one started build, and its agent."""
    name = "u" + secrets.token_hex(5)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        user = _one(conn, "INSERT INTO users (username, email, hashed_password) VALUES (%s, %s, 'x') RETURNING id",
                    name, f"{name}@example.com")
        key_id = secrets.token_hex(5)
        conn.execute("INSERT INTO api_keys (id, hashed_secret, user_id, login_type, lifetime_seconds, expires_at) "
                     "VALUES (%s, %s, %s, 'password', 3600, now() + interval '1 hour')",
                     (key_id, hashlib.sha256(os.urandom(8)).digest(), user))
        template = _one(conn, "INSERT INTO templates (name, created_by) VALUES (%s, %s) RETURNING id", name, user)
        digest = hashlib.sha256(name.encode()).hexdigest()
        conn.execute("INSERT INTO files (hash, data) VALUES (%s, '') ON CONFLICT DO NOTHING", (digest,))
        job = _one(conn, "INSERT INTO provisioner_jobs (type, timeout_seconds) VALUES ('workspace_build', 60) "
                   "RETURNING id")
        version = _one(conn, "INSERT INTO template_versions (template_id, number, file_hash, job_id) "
                       "VALUES (%s, 1, %s, %s) RETURNING id", template, digest, job)
        workspace = _one(conn, "INSERT INTO workspaces (owner_id, template_id, name) VALUES (%s, %s, 'ws') "
                         "RETURNING id", user, template)
        build_job = _one(conn, "INSERT INTO provisioner_jobs (type, timeout_seconds) VALUES ('workspace_build', 60) "
                         "RETURNING id")
        conn.execute("INSERT INTO workspace_builds (workspace_id, build_number, transition, template_version_id, "
                     "job_id) VALUES (%s, 1, 'start', %s, %s)", (workspace, version, build_job))
        resource = _one(conn, "INSERT INTO workspace_resources (job_id, address, type, name) "
                        "VALUES (%s, 'podman_container.ws', 'podman_container', 'ws') RETURNING id", build_job)
        agent = _one(conn, "INSERT INTO workspace_agents (terraform_id, resource_id, name, os, arch, hashed_token) "
                     "VALUES ('t', %s, 'main', 'linux', 'amd64', %s) RETURNING id",
                     resource, hashlib.sha256(os.urandom(8)).digest())
    return Agent(agent, workspace, user, key_id)


def vouch(conninfo: str, agent: Agent, kind: str, key: NodeKey | None = None,
          expires_at: datetime | None = None) -> NodeKey:
    """Insert `key` (a new one by default) into relay_peers as the agent's key or one of its owner's clients."""
    key = key or NodeKey.generate()
    client = kind == "client"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO relay_peers (node_key, kind, agent_id, workspace_id, user_id, api_key_id, "
                     "expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (key.public, kind, agent.id, agent.workspace_id,
                      agent.owner_id if client else None, agent.api_key_id if client else None,
                      expires_at or datetime.now(UTC) + LIFETIME))
    return key


def execute(conninfo: str, statement: str, *params: object) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement, params)


def new_id() -> str:
    return str(uuid.uuid4())
