"""Provisioner jobs as users see them: a job's status, and its log lines (for imports and builds alike)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from appliance.sdk.base import BigCount, Query, Timestamp

JobStatus = Literal["pending", "running", "succeeded", "failed", "canceling", "canceled"]


class JobResponse(BaseModel):
    id: str
    status: JobStatus
    error: str
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None


class LogsQuery(Query):
    after: BigCount = Field(default=0, description="Only lines after this log id.")
    follow: bool = Field(default=False, description="Stream as server-sent events until the job ends.")


class LogResponse(BaseModel):
    id: int
    created_at: Timestamp
    stage: str
    level: str
    output: str


class LogListResponse(BaseModel):
    logs: list[LogResponse]
    job: JobResponse
