"""Request and response shapes for templates, workspaces and builds (provisioner daemons: appliance.sdk)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from appliance.api.schemas import Body, Query

ParameterValues = dict[str, str]


class FileResponse(BaseModel):
    hash: str


class CreateTemplateRequest(Body):
    name: str = Field(max_length=32)
    display_name: str = Field(default="", max_length=64)
    description: str = Field(default="", max_length=1024)
    allowed_roles: list[str] | None = None


class UpdateTemplateRequest(Body):
    display_name: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=1024)
    allowed_roles: list[str] | None = None


class CreateVersionRequest(Body):
    file_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    message: str = Field(default="", max_length=1024)
    activate: bool = True


class TemplateResponse(BaseModel):
    id: str
    name: str
    display_name: str
    description: str
    allowed_roles: list[str]
    active_version_id: str | None
    active_version_name: str | None
    workspace_count: int
    created_at: datetime
    updated_at: datetime


class TemplateListResponse(BaseModel):
    templates: list[TemplateResponse]


class JobResponse(BaseModel):
    id: str
    status: Literal["pending", "running", "succeeded", "failed", "canceling", "canceled"]
    error: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class ParameterResponse(BaseModel):
    name: str
    display_name: str
    description: str
    type: str
    default: str | None
    mutable: bool
    required: bool
    options: list[dict[str, str]]
    validation: dict[str, Any]


class AppResponse(BaseModel):
    slug: str
    display_name: str
    url: str
    command: str


class VersionAgentResponse(BaseModel):
    name: str
    os: str
    arch: str
    apps: list[AppResponse]


class VersionResponse(BaseModel):
    id: str
    template_id: str
    template_name: str
    name: str
    number: int
    message: str
    archived: bool
    active: bool
    job: JobResponse
    parameters: list[ParameterResponse]
    agents: list[VersionAgentResponse]
    created_by: str
    created_at: datetime


class VersionListResponse(BaseModel):
    versions: list[VersionResponse]


class LogsQuery(Query):
    after: int = Field(default=0, ge=0, description="Only lines after this log id.")
    follow: bool = Field(default=False, description="Stream as server-sent events until the job ends.")


class LogResponse(BaseModel):
    id: int
    created_at: datetime
    stage: str
    level: str
    output: str


class LogListResponse(BaseModel):
    logs: list[LogResponse]
    job: JobResponse


class CreateWorkspaceRequest(Body):
    template: str = Field(max_length=64)
    name: str = Field(max_length=32)
    parameters: ParameterValues = Field(default_factory=dict)
    owner: str = Field(default="me", max_length=64)


class CreateBuildRequest(Body):
    transition: Literal["start", "stop", "delete"]
    template_version_id: str | None = None
    parameters: ParameterValues | None = None


class UpdateWorkspaceRequest(Body):
    parameters: ParameterValues = Field(default_factory=dict)


class WorkspacesQuery(Query):
    owner: str = Field(default="me", description="'me', a username, or 'all'.")
    name: str = Field(default="", description="Only the workspace with this name.")


class AgentResponse(BaseModel):
    id: str
    name: str
    os: str
    arch: str
    apps: list[AppResponse]


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
    created_at: datetime
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
    created_at: datetime
    updated_at: datetime


class WorkspaceListResponse(BaseModel):
    workspaces: list[WorkspaceResponse]
