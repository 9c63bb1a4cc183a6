"""The web terminal page: xterm.js on a WebSocket to the gateway (appliance/gateway/terminal.py).

/workspaces/<workspace>/terminal opens a shell on the workspace's agent (?agent=NAME when it has
several); ?app=SLUG runs that appliance_app's command instead. The command comes from the
template's app, never from the URL, so a link cannot make someone's terminal run what it likes.
The page is static: static/terminal.js does the rest (the connect right is checked when it opens
the WebSocket, by the same pairing the CLI uses).
"""

from __future__ import annotations

from typing import Any

from flask import request

from appliance.auth.rbac import Subject
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.errors import NotFound
from appliance.responses import workspace_response
from appliance.sdk.templates import AppResponse
from appliance.sdk.terminal import TERMINAL_PATH
from appliance.sdk.workspaces import AgentResponse
from appliance.workspaces import service as workspaces


def _agent(found: list[AgentResponse], name: str, workspace: str) -> AgentResponse:
    chosen = [a for a in found if not name or a.name == name]
    if len(chosen) != 1:
        which = f"an agent named {name!r}" if name else "exactly one agent"
        raise NotFound(f"Workspace {workspace} does not have {which} running.",
                       "Start the workspace; a template with several agents needs ?agent=NAME.")
    return chosen[0]


def _app(agent: AgentResponse, slug: str) -> AppResponse | None:
    if not slug:
        return None
    for app in agent.apps:
        if app.slug == slug and app.command:
            return app
    raise NotFound(f"Agent {agent.name} has no app {slug!r} with a command.",
                   "The workspace page lists the agent's apps; a terminal opens only those with a command.")


@bp.get("/workspaces/<workspace_id>/terminal")
@page(back="console.workspace_detail")
def workspace_terminal(conn: Connection, subject: Subject, workspace_id: str) -> Any:
    found = workspaces.find_workspace(conn, subject, workspace_id)
    workspace = workspace_response(found, workspaces.resources(conn, found.latest_build))
    agents = [a for r in workspace.latest_build.resources for a in r.agents]
    agent = _agent(agents if workspace.latest_build.transition == "start" else [], request.args.get("agent", ""),
                   workspace.name)
    app = _app(agent, request.args.get("app", ""))
    socket_path = request.script_root + TERMINAL_PATH.format(agent=agent.id)
    return render("terminal.html", workspace=workspace, agent=agent, app=app, socket_path=socket_path)
