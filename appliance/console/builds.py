"""How builds and jobs read in the console: status badges, the actions a status allows, logs by stage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from appliance.console.blueprint import bp
from appliance.db.database import Connection, Row
from appliance.provisioner import jobs
from appliance.sdk.jobs import JobResponse

# Which buttons the workspace page offers for each status; the service still has the last word (409).
ACTIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"cancel"}),
    "starting": frozenset({"cancel"}),
    "stopping": frozenset({"cancel"}),
    "deleting": frozenset({"cancel"}),
    "canceling": frozenset(),
    "running": frozenset({"stop", "delete", "update"}),
    "stopped": frozenset({"start", "delete", "update"}),
    "failed": frozenset({"start", "stop", "delete", "update"}),
    "canceled": frozenset({"start", "stop", "delete", "update"}),
    "deleted": frozenset(),
}
# Job statuses whose logs may still grow, so the page follows them live.
LIVE_JOB_STATUSES = frozenset({"pending", "running", "canceling"})
# A page shows at most this many lines of one job; `appliance builds logs` has them all.
MAX_LOG_LINES = 5000


def allowed_actions(status: str, *, is_outdated: bool) -> frozenset[str]:
    """The buttons to show; Update only when a newer template version is active."""
    actions = ACTIONS.get(status, frozenset())
    return actions if is_outdated else actions - {"update"}


def is_live(job: JobResponse | None) -> bool:
    return job is not None and job.status in LIVE_JOB_STATUSES


def job_logs(conn: Connection, job_id: UUID) -> list[Row]:
    """A job's log lines, oldest first, up to MAX_LOG_LINES. Callers have authorized reading the job."""
    lines: list[Row] = []
    while len(lines) < MAX_LOG_LINES:
        page = jobs.logs_after(conn, job_id, lines[-1]["id"] if lines else 0)
        if not page:
            break
        lines.extend(page)
    return lines[:MAX_LOG_LINES]


@dataclass
class Stage:
    """Consecutive log lines of one stage (init, plan, apply...), shown under one header."""

    name: str
    lines: list[Mapping[str, Any]] = field(default_factory=list)


def by_stage(logs: Iterable[Mapping[str, Any]]) -> list[Stage]:
    stages: list[Stage] = []
    for line in logs:
        if not stages or stages[-1].name != line["stage"]:
            stages.append(Stage(line["stage"]))
        stages[-1].lines.append(line)
    return stages


@bp.app_template_filter("when")
def when(value: datetime | str | None) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM:SS UTC', from a datetime or the API's ISO string."""
    if value is None or value == "":
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
