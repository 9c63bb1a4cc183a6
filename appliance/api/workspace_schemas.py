"""Request and response shapes for external provisioner daemons (the other shapes live in appliance.sdk)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from appliance.sdk.base import Body


class AcquireRequest(Body):
    daemon_id: str
    name: str = Field(max_length=64)
    tags: dict[str, str] = Field(default_factory=dict)
    version: str = ""


class JobLogsRequest(Body):
    logs: list[tuple[str, Literal["debug", "info", "warn", "error"], str]] = Field(max_length=5000)


class CompleteImportRequest(Body):
    plan: dict[str, Any]


class FailJobRequest(Body):
    error: str = Field(max_length=4000)
    state: str | None = None



class HeartbeatResponse(BaseModel):
    canceled: bool


class JobSpecResponse(BaseModel):
    id: str
    type: str
    timeout_seconds: int
    transition: str
    env: dict[str, str]
    source: str
    state: str | None
    secrets: list[str]
    heartbeat_seconds: float
