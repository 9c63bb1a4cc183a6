"""Templates on the wire: uploads, templates, versions with the parameters and agents their import found."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from appliance.sdk.base import Body, Line, Text, Timestamp
from appliance.sdk.jobs import JobResponse


class FileResponse(BaseModel):
    hash: str


class CreateTemplateRequest(Body):
    name: Line = Field(max_length=32)
    display_name: Line = Field(default="", max_length=64)
    description: Text = Field(default="", max_length=1024)
    allowed_roles: list[Line] | None = None


class UpdateTemplateRequest(Body):
    display_name: Line | None = Field(default=None, max_length=64)
    description: Text | None = Field(default=None, max_length=1024)
    allowed_roles: list[Line] | None = None


class CreateVersionRequest(Body):
    file_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    message: Text = Field(default="", max_length=1024)
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
    created_at: Timestamp
    updated_at: Timestamp


class TemplateListResponse(BaseModel):
    templates: list[TemplateResponse]


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


AppShare = Literal["owner", "authenticated", "public"]


class AppResponse(BaseModel):
    slug: str
    display_name: str
    url: str
    command: str
    share: AppShare = "owner"  # who may open it (ADR 0031): "public" means any logged-in user here


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
    created_at: Timestamp


class VersionListResponse(BaseModel):
    versions: list[VersionResponse]
