"""What a build left standing: its resources, their agents (token hashed) and apps, stored for the workspace."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from appliance.db.database import Connection
from appliance.provisioner.extract import Agent, StateResource
from appliance.sdk.agents import AppHealth
from appliance.workspaces.agent_reports import has_healthcheck


def initial_health(healthcheck: dict[str, Any] | None) -> AppHealth:
    """Coder's: an app the agent will check is initializing until the first answer; one it will not, disabled."""
    return "initializing" if has_healthcheck(healthcheck) else "disabled"


def _store_agent(conn: Connection, resource_id: UUID, agent: Agent) -> None:
    row = conn.execute(
        "INSERT INTO workspace_agents (terraform_id, resource_id, name, os, arch, directory, startup_script,"
        " env, hashed_token, connection_timeout_seconds, startup_script_timeout_seconds, troubleshooting_url,"
        " metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (agent.terraform_id, resource_id, agent.name, agent.os, agent.arch, agent.directory,
         agent.startup_script, Jsonb(agent.env), agent.hashed_token, agent.connection_timeout_seconds,
         agent.startup_script_timeout_seconds, agent.troubleshooting_url, Jsonb(agent.metadata))).fetchone()
    assert row is not None
    for app in agent.apps:
        conn.execute("INSERT INTO workspace_apps (agent_id, slug, display_name, url, command, share, healthcheck,"
                     " health) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                     (row["id"], app["slug"], app["display_name"], app["url"], app["command"],
                      app.get("share", "owner"), Jsonb(app["healthcheck"]), initial_health(app["healthcheck"])))


def store(conn: Connection, job_id: UUID, resources: list[StateResource]) -> None:
    """Record the resources a build's job left (read from its state by provisioner.extract)."""
    for resource in resources:
        row = conn.execute(
            "INSERT INTO workspace_resources (job_id, address, type, name, daily_cost, metadata)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (job_id, resource.address, resource.type, resource.name, resource.daily_cost,
             Jsonb(resource.metadata))).fetchone()
        assert row is not None
        for agent in resource.agents:
            _store_agent(conn, row["id"], agent)
