"""The audit log on the wire: search filters, one entry, and a page of entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from appliance.sdk.base import BigCount, Line, Query, Timestamp


class AuditExportQuery(Query):
    username: Line | None = Field(default=None, description="Actor's username.")
    action: Line | None = Field(default=None, description="create, write, delete, login, logout.")
    resource_type: Line | None = None
    resource_id: Line | None = None
    since: datetime | None = Field(default=None, description="ISO 8601 time, inclusive.")
    until: datetime | None = Field(default=None, description="ISO 8601 time, exclusive.")


class AuditQuery(AuditExportQuery):
    """The export's filters, one page at a time."""

    limit: int = Field(default=50, ge=1, le=1000)
    offset: BigCount = 0


class AuditLogResponse(BaseModel):
    id: str
    time: Timestamp
    user_id: str | None
    username: str
    action: str
    resource_type: str
    resource_id: str
    resource_target: str
    diff: dict[str, Any]
    status_code: int
    ip: str | None
    user_agent: str
    request_id: str


class AuditPageResponse(BaseModel):
    audit_logs: list[AuditLogResponse]
    count: int
