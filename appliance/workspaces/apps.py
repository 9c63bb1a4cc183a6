"""Workspace apps opened by path (/@owner/workspace.agent/apps/slug/): which app a URL names, and who may open it.

Who: the workspace's owner and site owners (the right to connect, as pairing has it); anyone logged
in when the template shares the app ("authenticated", and "public", which this appliance treats the
same: docs/adr/0031). Everyone else gets the 404 a missing app gets, so a URL never tells a stranger
that a workspace or an app exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from appliance.auth.rbac import Subject, is_allowed
from appliance.db.database import Connection
from appliance.errors import Conflict, NotFound, RequestError
from appliance.sdk.agents import LOOPBACK_HOSTS
from appliance.workspaces.agents import Agent, agents_of_newest_build
from appliance.workspaces.pairing import CONNECT, SHARED_APPS


class AppUnreachable(RequestError):
    status = 502


@dataclass(frozen=True)
class AppTarget:
    """An app a subject may open: where it listens inside the workspace and whose it is."""

    agent: Agent
    slug: str
    share: str
    scheme: str
    netloc: str  # host[:port] as the app URL has it: the Host header the app expects
    host: str
    port: int
    base_path: str  # the app URL's own path, which the request's rest is appended to
    is_owner: bool  # the workspace is the subject's own (another's app is sandboxed: ADR 0031)
    health: str  # as the agent's healthcheck last reported it (disabled without one)


def app_path(owner: str, workspace: str, agent: str, slug: str) -> str:
    return f"/@{owner}/{workspace}.{agent}/apps/{slug}/"


def app_not_found(owner: str, target: str, slug: str) -> NotFound:
    return NotFound(f"No app {slug!r} at /@{owner}/{target}.",
                    "App URLs are /@OWNER/WORKSPACE.AGENT/apps/SLUG/ (the agent may be left out when the "
                    "workspace has one); the workspace page links its apps.")


def _pick_agent(agents: list[Agent], name: str) -> Agent | None:
    if name:
        return next((a for a in agents if a.name == name), None)
    return agents[0] if len(agents) == 1 else None


def find_app(conn: Connection, subject: Subject, owner: str, target: str, slug: str) -> AppTarget:
    """The app `slug` of /@owner/target (target: workspace.agent, or workspace); 404 unless the subject may open it."""
    workspace, _, agent_name = target.partition(".")
    agent = _pick_agent(agents_of_newest_build(conn, owner, workspace), agent_name)
    row = None if agent is None else conn.execute(
        "SELECT * FROM workspace_apps WHERE agent_id = %s AND slug = %s", (agent.id, slug)).fetchone()
    if agent is None or row is None:
        raise app_not_found(owner, target, slug)
    is_own = agent.owner_id == subject.user_id
    if not (is_allowed(subject, CONNECT, agent.resource) or row["share"] in SHARED_APPS):
        raise app_not_found(owner, target, slug)
    if not row["url"]:
        raise NotFound(f"App {slug!r} of {agent.target} is a command, not a web app.",
                       "Open it from the workspace page: it runs in the web terminal.")
    if not agent.is_live:
        raise Conflict(f"Workspace {agent.target} is not running, so its app {slug!r} cannot be opened.",
                       "Start the workspace (its page has a Start button, or `appliance start "
                       f"{agent.workspace_name}`), wait until its agent is connected, then reload.")
    return _target(agent, row, is_own)


def _target(agent: Agent, row: dict[str, Any], is_own: bool) -> AppTarget:
    url = urlsplit(row["url"])
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        port = 0
    if url.scheme not in ("http", "https") or url.hostname not in LOOPBACK_HOSTS or not port:
        raise AppUnreachable(f"App {row['slug']!r} of {agent.target} has the url {row['url']!r}, which the "
                             "workspace's agent cannot forward to.",
                             "Apps listen on the workspace's loopback: set the template's appliance_app url to "
                             "http://localhost:PORT (optionally with a path), then update the workspace.")
    return AppTarget(agent, row["slug"], row["share"], url.scheme, url.netloc, url.hostname or "", port,
                     url.path.rstrip("/"), is_own, row["health"])


def app_links(conn: Connection, job_id: UUID, owner: str, workspace: str) -> list[dict[str, Any]]:
    """A build's apps as the workspace page lists them: where each opens, who may, and its health."""
    rows = conn.execute("SELECT p.*, a.name AS agent_name FROM workspace_apps p"
                        " JOIN workspace_agents a ON a.id = p.agent_id"
                        " JOIN workspace_resources r ON r.id = a.resource_id"
                        " WHERE r.job_id = %s ORDER BY a.name, p.slug", (job_id,)).fetchall()
    return [{"slug": r["slug"], "display_name": r["display_name"] or r["slug"], "agent": r["agent_name"],
             "share": r["share"], "command": r["command"], "health": r["health"],
             "href": app_path(owner, workspace, r["agent_name"], r["slug"]) if r["url"] else None} for r in rows]
