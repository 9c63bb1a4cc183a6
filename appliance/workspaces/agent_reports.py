"""What an agent reports from inside its workspace beyond its lifecycle: listening TCP ports and app health.

Ports are one list per agent, replaced whole by each report and shown only while the agent is
connected (a disconnected agent cannot say what still listens). App health is Coder's state per
app; only an app whose template gave it a healthcheck takes a report.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from appliance.db.database import Connection
from appliance.errors import InvalidInput
from appliance.sdk.agents import AgentApp, AppHealth, AppHealthcheck, ListeningPort
from appliance.workspaces.agent_status import connection_status
from appliance.workspaces.agents import Agent


def save_listening_ports(conn: Connection, agent: Agent, ports: list[ListeningPort]) -> None:
    """Replace the agent's list; one entry per port (IPv4 and IPv6 listeners of one port are one)."""
    unique = {p.port: p for p in reversed(ports)}  # the first entry of a port wins
    rows = [unique[port].model_dump(mode="json") for port in sorted(unique)]
    conn.execute("UPDATE workspace_agents SET listening_ports = %s, listening_ports_at = now() WHERE id = %s",
                 (Jsonb(rows), agent.id))


def listening_ports(conn: Connection, agent: Agent, now: datetime) -> list[ListeningPort]:
    if connection_status(agent.times, now) != "connected":
        return []
    row = conn.execute("SELECT listening_ports FROM workspace_agents WHERE id = %s", (agent.id,)).fetchone()
    return [ListeningPort.model_validate(p) for p in (row["listening_ports"] if row else [])]


def has_healthcheck(healthcheck: dict[str, Any] | None) -> bool:
    return bool(healthcheck and healthcheck.get("url"))


def agent_apps(conn: Connection, agent_id: UUID) -> list[AgentApp]:
    """The agent's apps as its manifest carries them: a healthcheck only where the template gave one."""
    rows = conn.execute("SELECT id, slug, url, healthcheck FROM workspace_apps WHERE agent_id = %s ORDER BY slug",
                        (agent_id,)).fetchall()
    return [AgentApp(id=str(r["id"]), slug=r["slug"], url=r["url"],
                     healthcheck=_healthcheck(r["healthcheck"]) if has_healthcheck(r["healthcheck"]) else None)
            for r in rows]


def _healthcheck(raw: dict[str, Any]) -> AppHealthcheck:
    return AppHealthcheck(url=str(raw["url"]), interval=max(1, int(raw.get("interval") or 5)),
                          threshold=max(1, int(raw.get("threshold") or 3)))


def save_app_health(conn: Connection, agent: Agent, healths: Mapping[str, AppHealth]) -> None:
    """Record new health states; an id that is not one of this agent's checked apps is refused, naming it."""
    checked = {str(app.id) for app in agent_apps(conn, agent.id) if app.healthcheck is not None}
    for app_id in healths:
        if app_id not in checked:
            raise InvalidInput(f"App {app_id!r} is not an app with a healthcheck on agent {agent.name}.",
                               "Report health only for the apps in the agent's manifest that have a healthcheck.",
                               field=f"healths.{app_id}")
    with conn.cursor() as cur:
        cur.executemany("UPDATE workspace_apps SET health = %s WHERE id = %s AND agent_id = %s",
                        [(health, UUID(app_id), agent.id) for app_id, health in healths.items()])
