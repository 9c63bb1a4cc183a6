"""The provisioner daemon's wire: what a daemon sends to /api/v2/provisionerd and what it gets back.

Declared once: the API parses and serialises with these models and the OpenAPI document shows
them; the daemon (appliance.provisionerd) builds its requests and parses the answers with them.
Binary fields (a template's source archive, Terraform state) travel as standard base64 strings.

    POST /api/v2/provisionerd/acquire                  AcquireRequest -> JobSpec, or 204 (no job)
    POST /api/v2/provisionerd/jobs/<id>/heartbeat      -> HeartbeatResponse, or 410 (not this daemon's)
    POST /api/v2/provisionerd/jobs/<id>/logs           JobLogsRequest, or 410
    PUT  /api/v2/provisionerd/jobs/<id>/state          raw state bytes (up to MAX_STATE_BYTES), or 410/413
    POST /api/v2/provisionerd/jobs/<id>/import-complete  CompleteImportRequest, or 410
    POST /api/v2/provisionerd/jobs/<id>/build-complete   no body: the build ends with the last state PUT, or 410
    POST /api/v2/provisionerd/jobs/<id>/fail           FailJobRequest, or 410

Every request carries KEY_HEADER (the pre-shared key) and DAEMON_HEADER (the daemon's id). State
travels only on its own route, streamed into the database, never inside a JSON body (whose bound is
1 MiB); a daemon PUTs the final state before it reports the build's end (docs/adr/0013-state-upload.md).
410 answers every call about a job that is no longer the caller's (reaped, canceled or finished).
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

PATH = "/api/v2/provisionerd"
KEY_HEADER = "Appliance-Provisioner-Key"
DAEMON_HEADER = "Appliance-Provisioner-Daemon"
MAX_LOG_LINES = 5000       # per request; the runner flushes every 50 lines or 0.25 s
MAX_ERROR_CHARS = 4000     # a failure message longer than this is cut by the daemon
MAX_LOG_LINE_CHARS = 8192  # a longer output line (a plan showing a huge value) is cut, by both sides
MAX_STATE_BYTES = 256 << 20  # the state route's own bound; nginx's location for it allows the same
STATE_CHUNK_BYTES = 1 << 20  # the server reads (and the daemon sends) state this much at a time


def _from_base64(value: Any) -> Any:
    """Strings on the wire are base64; bytes built in Python pass through."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as err:
            raise ValueError(f"not valid base64 ({err})") from err
    return value


def _to_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Base64Bytes = Annotated[bytes, BeforeValidator(_from_base64),
                        PlainSerializer(_to_base64, return_type=str, when_used="json"),
                        WithJsonSchema({"type": "string", "format": "byte"})]
LogLevel = Literal["debug", "info", "warn", "error"]
LogLine = tuple[str, LogLevel, str]   # (stage, level, output)


class JobType(StrEnum):
    IMPORT = "template_version_import"
    BUILD = "workspace_build"


class _Request(BaseModel):
    """A request body: unknown fields are refused so a typo is reported, not ignored."""

    model_config = ConfigDict(extra="forbid")


class AcquireRequest(_Request):
    daemon_id: UUID
    name: str = Field(max_length=64)
    tags: dict[str, str] = Field(default_factory=dict)
    version: str = ""


class JobLogsRequest(_Request):
    logs: list[LogLine] = Field(max_length=MAX_LOG_LINES)


class CompleteImportRequest(_Request):
    plan: dict[str, Any] = Field(description="`terraform show -json` of the import's plan.")


class FailJobRequest(_Request):
    """The state terraform wrote before it failed goes first, on the state route."""

    error: str = Field(max_length=MAX_ERROR_CHARS)


class HeartbeatResponse(BaseModel):
    canceled: bool


class JobSpec(BaseModel):
    """A claimed job as a daemon runs it: the template source, provider env and the prior state."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    type: JobType
    timeout_seconds: int
    transition: str
    env: dict[str, str]
    source: Base64Bytes = Field(description="The template version's tar archive.")
    state: Base64Bytes | None = Field(description="The workspace's last Terraform state (builds only).")
    secrets: list[str] = Field(default_factory=list, description="Values the daemon hides from the logs.")
    # The control plane decides how often a daemon must beat: a quarter of its heartbeat timeout.
    heartbeat_seconds: float = 10.0
