"""Domain objects as the wire models of appliance.sdk: the one place a service's result becomes JSON's shape.

The API serialises what these return, and the console renders them, so the two never disagree
about what a user, a template or a workspace looks like.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from appliance.audit.search import AuditEntry
from appliance.auth.apikeys import ApiKey
from appliance.auth.rbac import ROLES
from appliance.auth.users import User
from appliance.db.database import Row
from appliance.provisioner.jobs import Job
from appliance.sdk.agents import AgentLogResponse, MetadataResponse, RelayCounters, WorkspaceAgentResponse
from appliance.sdk.audit import AuditLogResponse
from appliance.sdk.jobs import JobResponse
from appliance.sdk.templates import ParameterResponse, TemplateResponse, VersionAgentResponse, VersionResponse
from appliance.sdk.tokens import TokenResponse
from appliance.sdk.users import RoleResponse, UserResponse
from appliance.sdk.workspaces import BuildResponse, ConnectionResponse, ResourceResponse, WorkspaceResponse
from appliance.templates.service import Template, Version
from appliance.workspaces.agent_status import connection_status, troubleshooting_hint
from appliance.workspaces.agents import Agent
from appliance.workspaces.connections import state as connection_state
from appliance.workspaces.service import Build, Workspace


def user_response(user: User) -> UserResponse:
    return UserResponse(
        id=str(user.id), username=user.username, email=user.email, name=user.name, status=user.status,
        roles=[RoleResponse(name=r, display_name=ROLES[r].display_name) for r in sorted(user.roles)],
        created_at=user.created_at, updated_at=user.updated_at, last_seen_at=user.last_seen_at)


def token_response(key: ApiKey) -> TokenResponse:
    return TokenResponse(
        id=key.id, user_id=str(key.user_id), token_name=key.token_name, login_type=key.login_type, scope=key.scope,
        lifetime_seconds=key.lifetime_seconds, created_at=key.created_at, expires_at=key.expires_at,
        last_used_at=key.last_used_at)


def audit_log_response(entry: AuditEntry) -> AuditLogResponse:
    return AuditLogResponse(
        id=str(entry.id), time=entry.time, user_id=str(entry.user_id) if entry.user_id else None,
        username=entry.username, action=entry.action, resource_type=entry.resource_type,
        resource_id=entry.resource_id, resource_target=entry.resource_target, diff=entry.diff,
        status_code=entry.status_code, ip=entry.ip, user_agent=entry.user_agent, request_id=entry.request_id)


def job_response(job: Job) -> JobResponse:
    return JobResponse(id=str(job.id), status=job.status.value, error=job.error, created_at=job.created_at,
                       started_at=job.started_at, completed_at=job.completed_at)


def template_response(template: Template) -> TemplateResponse:
    return TemplateResponse(
        id=str(template.id), name=template.name, display_name=template.display_name,
        description=template.description, allowed_roles=template.allowed_roles,
        active_version_id=str(template.active_version_id) if template.active_version_id else None,
        active_version_name=template.active_version_name, workspace_count=template.workspace_count,
        created_at=template.created_at, updated_at=template.updated_at)


def version_response(version: Version) -> VersionResponse:
    """Parameters and agents are stored as the import found them; only their declared fields go out."""
    return VersionResponse(
        id=str(version.id), template_id=str(version.template_id), template_name=version.template_name,
        name=version.name, number=version.number, message=version.message, archived=version.archived,
        active=version.active, job=job_response(version.job),
        parameters=[ParameterResponse.model_validate(p) for p in version.parameters],
        agents=[VersionAgentResponse.model_validate(a) for a in version.agents],
        created_by=version.created_by, created_at=version.created_at)


def build_response(build: Build, resources: list[dict[str, Any]] | None = None) -> BuildResponse:
    """`resources` is what workspaces.resources() read for this build; lists leave them out (empty)."""
    return BuildResponse(
        id=str(build.id), workspace_id=str(build.workspace_id), build_number=build.build_number,
        transition=build.transition, status=build.status, job=job_response(build.job),
        initiator_name=build.initiator_name, template_version_id=str(build.template_version_id),
        template_version_name=build.template_version_name, created_at=build.created_at,
        resources=[ResourceResponse.model_validate(r) for r in resources or []])


def workspace_response(workspace: Workspace, resources: list[dict[str, Any]] | None = None) -> WorkspaceResponse:
    build = workspace.latest_build
    return WorkspaceResponse(
        id=str(workspace.id), name=workspace.name, owner_id=str(workspace.owner_id), owner_name=workspace.owner_name,
        template_id=str(workspace.template_id), template_name=workspace.template_name,
        template_version_id=str(build.template_version_id), template_version_name=build.template_version_name,
        outdated=workspace.outdated, status=workspace.status, parameters=build.parameters,
        latest_build=build_response(build, resources), created_at=workspace.created_at,
        updated_at=workspace.updated_at)


def agent_response(agent: Agent, results: dict[str, Row], now: datetime) -> WorkspaceAgentResponse:
    """An agent with its status as of `now` and its metadata blocks' latest results (`results` by key)."""
    status = connection_status(agent.times, now)
    metadata = []
    for description in agent.descriptions:
        result = results.get(description.key)
        metadata.append(MetadataResponse(description=description, value=result["value"] if result else "",
                                         error=result["error"] if result else "",
                                         collected_at=result["collected_at"] if result else None))
    return WorkspaceAgentResponse(
        id=str(agent.id), name=agent.name, workspace_id=str(agent.workspace_id), status=status,
        lifecycle_state=agent.lifecycle_state,
        troubleshooting_hint=troubleshooting_hint(status, agent.troubleshooting_url),
        connection_timeout_seconds=agent.times.connection_timeout_seconds,
        first_connected_at=agent.times.first_connected_at, last_connected_at=agent.times.last_connected_at,
        disconnected_at=agent.times.disconnected_at, started_at=agent.started_at, ready_at=agent.ready_at,
        version=agent.version, metadata=metadata)


def agent_log_response(row: Row) -> AgentLogResponse:
    return AgentLogResponse(id=row["id"], created_at=row["created_at"], output=row["output"], level=row["level"])


def relay_counters(row: Row) -> RelayCounters:
    return RelayCounters(relay_name=row["relay_name"], region_id=row["region_id"], started_at=row["started_at"],
                         updated_at=row["updated_at"],
                         counters={k: int(v) for k, v in dict(row["counters"]).items() if isinstance(v, int | float)})


def connection_response(row: Row) -> ConnectionResponse:
    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return ConnectionResponse(
        id=str(row["id"]), workspace_id=str(row["workspace_id"]), agent_id=text(row["agent_id"]),
        agent_name=row["agent_name"], user_id=text(row["user_id"]), username=row["username"], kind=row["kind"],
        client_ip=text(row["client_ip"]), user_agent=row["user_agent"], state=connection_state(row),
        created_at=row["created_at"], connected_at=row["connected_at"], ended_at=row["ended_at"],
        bytes_to_agent=row["bytes_to_agent"], bytes_from_agent=row["bytes_from_agent"])
