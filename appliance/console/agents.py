"""Agents on the workspace page (status, lifecycle, hint, startup log, metadata, listening ports) and the
relay admin page.

Both pages render what the API answers and then follow it by polling the same JSON endpoints
(agents.js, relay.js): no inline script, so the console's strict CSP holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.auth.web import server_config
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.responses import agent_log_response, agent_response, relay_counters
from appliance.sdk.agents import AgentLogResponse, ListeningPort, WorkspaceAgentResponse
from appliance.sdk.workspaces import ResourceResponse
from appliance.workspaces import agent_reports, agents
from appliance.workspaces.relay import derp_map, relay_stats

# Shown first on the relay page, in this order; any other counter the relay writes follows.
MAIN_COUNTERS = ("peers", "agents", "clients", "connections", "bytes_in", "bytes_out", "packets_in", "packets_out",
                 "drops", "refusals")


AgentPanel = tuple[WorkspaceAgentResponse, list[AgentLogResponse], list[ListeningPort]]


def agent_panels(conn: Connection, resources: list[ResourceResponse]) -> list[AgentPanel]:
    """Each agent of the build's resources with its status as of now, its startup log so far and its ports."""
    now = datetime.now(UTC)
    panels = []
    for resource in resources:
        for listed in resource.agents:
            agent = agents.find_agent(conn, listed.id)
            logs = [agent_log_response(r) for r in agents.logs_after(conn, agent.id, 0)]
            panels.append((agent_response(agent, agents.metadata_results(conn, agent.id), now), logs,
                           agent_reports.listening_ports(conn, agent, now)))
    return panels


def ordered_counters(counters: dict[str, int]) -> list[tuple[str, int]]:
    main = [(name, counters.get(name, 0)) for name in MAIN_COUNTERS]
    return main + sorted((k, v) for k, v in counters.items() if k not in MAIN_COUNTERS)


@bp.get("/admin/relay")
@page()
def relay(conn: Connection, subject: Subject) -> Any:
    authorize(subject, Action.READ, Resource(ResourceType.DEPLOYMENT))
    relays = [relay_counters(row) for row in relay_stats(conn)]
    return render("relay.html", derp=derp_map(server_config().access_url), relays=relays,
                  ordered_counters=ordered_counters)
