"""Answers that carry no resource: a plain message, and the server's build information."""

from __future__ import annotations

from pydantic import BaseModel


class MessageResponse(BaseModel):
    message: str


class BuildInfoResponse(BaseModel):
    version: str
    commit: str
    dashboard_url: str
