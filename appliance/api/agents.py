"""/api/v2/workspaceagents: what a workspace agent reports with its token, and how users pair with agents.

Routes under /workspaceagents/me/ authenticate with the agent's own token (Authorization: Bearer),
never a user's session; the others are a user's, through the usual session or API token.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Response, request

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.spec import endpoint, json_response
from appliance.auth.rbac import Action, Resource, ResourceType, authorize
from appliance.auth.web import database, request_info, server_config
from appliance.db.database import Connection
from appliance.pki.ssh_ca import SshUserCa
from appliance.responses import agent_log_response, agent_response, relay_counters
from appliance.sdk.agents import (
    AgentLogListResponse,
    AgentLogsQuery,
    AgentLogsRequest,
    AgentManifest,
    AgentRelayRequest,
    AgentRelayResponse,
    AppHealthRequest,
    DerpMap,
    LifecycleRequest,
    ListeningPortsRequest,
    ListeningPortsResponse,
    MetadataRequest,
    PairRequest,
    PairResponse,
    RelayStatsResponse,
    WorkspaceAgentResponse,
)
from appliance.workspaces import agent_reports, agents, pairing
from appliance.workspaces.relay import derp_map, relay_stats

log = logging.getLogger(__name__)
TAG = "Workspace agents"
ME = "/workspaceagents/me"


def _site_derp_map() -> DerpMap:
    return derp_map(server_config().access_url)


def _ca() -> SshUserCa:
    return pairing.user_ca(server_config().pki_dir)


def _agent_token() -> str | None:
    """The agent's token from the Authorization header only: a browser's session cookie is never an agent."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _live_agent(conn: Connection) -> agents.Agent:
    return agents.authenticate_agent(conn, _agent_token())


# --- the agent's own routes ---

@endpoint(v2, "GET", ME + "/manifest", summary="What the calling agent runs: script, env, metadata, relay, SSH CA",
          tag=TAG, response=AgentManifest)
def agent_manifest() -> Response:
    with database().reading() as conn:
        agent = _live_agent(conn)
        apps = agent_reports.agent_apps(conn, agent.id)
    return json_response(agents.manifest(agent, _site_derp_map(), _ca().public_line, apps))


@endpoint(v2, "POST", ME + "/relay", summary="Vouch for the agent's relay key; report its SSH host key", tag=TAG,
          body=AgentRelayRequest, response=AgentRelayResponse, errors=(409,))
def agent_register_relay(body: AgentRelayRequest) -> Response:
    with database().transaction() as conn:
        agent = _live_agent(conn)
        expires_at = agents.register_relay(conn, agent, agents.node_key_bytes(body.node_key), body.ssh_host_key,
                                           body.version)
    log.info("agent_relay_registered", extra={"agent_id": str(agent.id), "workspace_id": str(agent.workspace_id),
                                               "node_key": body.node_key, "version": body.version})
    return json_response(AgentRelayResponse(node_key=body.node_key, expires_at=expires_at))


@endpoint(v2, "POST", ME + "/report-lifecycle", summary="Report a lifecycle state (Coder's)", tag=TAG,
          body=LifecycleRequest, status=204)
def agent_report_lifecycle(body: LifecycleRequest) -> Response:
    with database().transaction() as conn:
        agents.report_lifecycle(conn, _live_agent(conn), body.state, body.changed_at)
    return Response(status=204)


@endpoint(v2, "PATCH", ME + "/logs", summary="Append startup script output, in order", tag=TAG,
          body=AgentLogsRequest, status=204, errors=(413,))
def agent_append_logs(body: AgentLogsRequest) -> Response:
    with database().transaction() as conn:
        agents.append_logs(conn, _live_agent(conn), body.logs)
    return Response(status=204)


@endpoint(v2, "POST", ME + "/metadata", summary="Report the latest results of metadata blocks", tag=TAG,
          body=MetadataRequest, status=204)
def agent_report_metadata(body: MetadataRequest) -> Response:
    with database().transaction() as conn:
        agents.save_metadata(conn, _live_agent(conn), body.results)
    return Response(status=204)


@endpoint(v2, "POST", ME + "/listening-ports", summary="Report the TCP ports listening in the workspace", tag=TAG,
          body=ListeningPortsRequest, status=204)
def agent_report_listening_ports(body: ListeningPortsRequest) -> Response:
    with database().transaction() as conn:
        agent_reports.save_listening_ports(conn, _live_agent(conn), body.ports)
    return Response(status=204)


@endpoint(v2, "POST", ME + "/app-health", summary="Report changes in the health of the workspace's apps", tag=TAG,
          body=AppHealthRequest, status=204)
def agent_report_app_health(body: AppHealthRequest) -> Response:
    with database().transaction() as conn:
        agent_reports.save_app_health(conn, _live_agent(conn), body.healths)
    return Response(status=204)


# --- a user's routes ---

@endpoint(v2, "POST", "/workspaceagents/<agent>/pair",
          summary="Pair a client key with an agent; get its relay key, host key and an SSH certificate", tag=TAG,
          body=PairRequest, response=PairResponse, errors=(404, 409))
def agent_pair(agent: str, body: PairRequest) -> Response:
    with authenticated() as (conn, subject):
        paired = pairing.pair(conn, subject, request_info(), agent, node_key=agents.node_key_bytes(body.node_key),
                              ssh_public_key=body.ssh_public_key, ca=_ca(), derp=_site_derp_map(),
                              kind=body.kind)
    log.info("agent_paired", extra={"agent_id": paired.agent_id, "user": subject.username})
    return json_response(paired)


@endpoint(v2, "GET", "/workspaceagents/<agent>", summary="An agent's connection status, lifecycle and metadata",
          tag=TAG, response=WorkspaceAgentResponse, errors=(404,))
def get_agent(agent: str) -> Response:
    with authenticated() as (conn, subject):
        found = pairing.visible_agent(conn, subject, agent)
        payload = agent_response(found, agents.metadata_results(conn, found.id), datetime.now(UTC))
    return json_response(payload)


@endpoint(v2, "GET", "/workspaceagents/<agent>/listening-ports",
          summary="TCP ports listening in the workspace, as its agent last reported (none while disconnected)",
          tag=TAG, response=ListeningPortsResponse, errors=(404,))
def agent_listening_ports(agent: str) -> Response:
    with authenticated() as (conn, subject):
        found = pairing.visible_agent(conn, subject, agent)
        ports = agent_reports.listening_ports(conn, found, datetime.now(UTC))
    return json_response(ListeningPortsResponse(ports=ports))


@endpoint(v2, "GET", "/workspaceagents/<agent>/logs", summary="An agent's startup log lines after an id", tag=TAG,
          query=AgentLogsQuery, response=AgentLogListResponse, errors=(404,))
def agent_logs(agent: str, query: AgentLogsQuery) -> Response:
    with authenticated() as (conn, subject):
        found = pairing.visible_agent(conn, subject, agent)
        rows = agents.logs_after(conn, found.id, query.after)
    return json_response(AgentLogListResponse(logs=[agent_log_response(r) for r in rows]))


@endpoint(v2, "GET", "/derp-map", summary="The relay's region (one embedded region, no STUN)", tag=TAG,
          response=DerpMap)
def get_derp_map() -> Response:
    with authenticated():  # any user: it names no secret, but only the site's own users need it
        payload = _site_derp_map()
    return json_response(payload)


@endpoint(v2, "GET", "/relay", summary="The relay's region and live counters (owners)", tag=TAG,
          response=RelayStatsResponse)
def get_relay() -> Response:
    with authenticated() as (conn, subject):
        authorize(subject, Action.READ, Resource(ResourceType.DEPLOYMENT))
        rows = relay_stats(conn)
    return json_response(RelayStatsResponse(derp_map=_site_derp_map(), relays=[relay_counters(r) for r in rows]))
