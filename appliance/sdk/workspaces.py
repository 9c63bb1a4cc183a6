"""Workspaces on the wire: create, build, update, and a workspace with its latest build and resources."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from appliance.sdk.agents import AppHealth, ConnectionKind, ConnectionStatus, LifecycleState
from appliance.sdk.base import Body, Line, Query, Timestamp
from appliance.sdk.jobs import JobResponse
from appliance.sdk.templates import AppResponse

ParameterValues = dict[str, str]


class CreateWorkspaceRequest(Body):
    template: Line = Field(max_length=64)
    name: Line = Field(max_length=32)
    parameters: ParameterValues = Field(default_factory=dict)
    owner: Line = Field(default="me", max_length=64)


class CreateBuildRequest(Body):
    transition: Literal["start", "stop", "delete"]
    template_version_id: Line | None = None
    parameters: ParameterValues | None = None


class UpdateWorkspaceRequest(Body):
    parameters: ParameterValues = Field(default_factory=dict)


class WorkspacesQuery(Query):
    owner: Line = Field(default="me", description="'me', a username, or 'all'.")
    name: Line = Field(default="", description="Only the workspace with this name.")


class WorkspaceAppResponse(AppResponse):
    health: AppHealth  # as the agent's healthcheck last saw it; disabled when the app has none


class AgentResponse(BaseModel):
    id: str
    name: str
    os: str
    arch: str
    status: ConnectionStatus  # as Coder computes it; GET /api/v2/workspaceagents/{id} adds the details
    lifecycle_state: LifecycleState
    apps: list[WorkspaceAppResponse]


class ResourceResponse(BaseModel):
    type: str
    name: str
    address: str
    daily_cost: int
    metadata: list[dict[str, Any]]
    agents: list[AgentResponse]


class BuildResponse(BaseModel):
    id: str
    workspace_id: str
    build_number: int
    transition: str
    status: str
    job: JobResponse
    initiator_name: str
    template_version_id: str
    template_version_name: str
    created_at: Timestamp
    resources: list[ResourceResponse]


class BuildListResponse(BaseModel):
    builds: list[BuildResponse]


class WorkspaceResponse(BaseModel):
    id: str
    name: str
    owner_id: str
    owner_name: str
    template_id: str
    template_name: str
    template_version_id: str
    template_version_name: str
    outdated: bool
    status: str
    parameters: ParameterValues
    latest_build: BuildResponse
    created_at: Timestamp
    updated_at: Timestamp


class WorkspaceListResponse(BaseModel):
    workspaces: list[WorkspaceResponse]


ConnectionState = Literal["paired", "connected", "ended", "unknown end"]


class ConnectionResponse(BaseModel):
    """One session a client opened to the workspace's agent through the relay (the connection audit)."""

    id: str
    workspace_id: str
    agent_id: str | None
    agent_name: str
    user_id: str | None
    username: str
    kind: ConnectionKind
    client_ip: str | None
    user_agent: str
    state: ConnectionState  # paired: never connected; unknown end: the relay stopped without recording it
    created_at: Timestamp  # when it paired
    connected_at: Timestamp | None
    ended_at: Timestamp | None  # with "unknown end", the relay's last sign of life before it stopped
    bytes_to_agent: int | None  # relayed bytes (SSH ciphertext); None until it ended, or when unknown
    bytes_from_agent: int | None


class ConnectionListResponse(BaseModel):
    connections: list[ConnectionResponse]


class ConnectionsQuery(Query):
    limit: int = Field(default=100, ge=1, le=1000, description="The newest this many connections.")
