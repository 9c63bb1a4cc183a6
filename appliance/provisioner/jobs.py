"""The provisioner job queue in PostgreSQL: enqueue, claim, heartbeat, log, finish, cancel, reap.

A daemon claims the oldest queued job whose tags its own tags contain, with FOR UPDATE SKIP LOCKED
so two daemons never claim the same job. A job whose daemon stops sending heartbeats is failed by
whoever reaps next, so the workspace comes back to a state its owner can act on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from appliance.db.database import Connection, Row
from appliance.sdk.jobs import LogResponse
from appliance.sdk.provisionerd import JobType as JobType  # the wire's enum; re-exported for the queue's callers

log = logging.getLogger(__name__)
SITE_TAGS: dict[str, str] = {"scope": "site"}
JOBS_CHANNEL = "provisioner_jobs"  # NOTIFY payload: a queued job's id; idle daemons wake and claim
LOGS_CHANNEL = "provisioner_job_logs"  # NOTIFY payload: the id of a job with new lines or a new status


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELING = "canceling"
    CANCELED = "canceled"


@dataclass(frozen=True)
class Job:
    id: UUID
    type: JobType
    status: JobStatus
    error: str
    timeout: timedelta
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return cls(row["id"], JobType(row["type"]), job_status(row), row["error"],
                   timedelta(seconds=row["timeout_seconds"]), row["created_at"], row["started_at"],
                   row["completed_at"])

    @property
    def finished(self) -> bool:
        return self.completed_at is not None



def job_status(row: Row) -> JobStatus:
    if row["canceled_at"] is not None:
        return JobStatus.CANCELED if row["completed_at"] is not None else JobStatus.CANCELING
    if row["completed_at"] is not None:
        return JobStatus.FAILED if row["error"] else JobStatus.SUCCEEDED
    return JobStatus.RUNNING if row["started_at"] is not None else JobStatus.PENDING


def enqueue(conn: Connection, job_type: JobType, *, initiator_id: UUID | None, timeout: timedelta,
            tags: dict[str, str] | None = None) -> UUID:
    row = conn.execute(
        "INSERT INTO provisioner_jobs (type, initiator_id, timeout_seconds, tags) VALUES (%s, %s, %s, %s)"
        " RETURNING id", (job_type.value, initiator_id, int(timeout.total_seconds()),
                          json.dumps(tags or SITE_TAGS))).fetchone()
    assert row is not None
    conn.execute("SELECT pg_notify(%s, %s)", (JOBS_CHANNEL, str(row["id"])))
    return UUID(str(row["id"]))


def get(conn: Connection, job_id: UUID) -> Job | None:
    row = conn.execute("SELECT * FROM provisioner_jobs WHERE id = %s", (job_id,)).fetchone()
    return Job.from_row(row) if row else None


def register_daemon(conn: Connection, daemon_id: UUID, name: str, tags: dict[str, str], version: str) -> None:
    conn.execute(
        "INSERT INTO provisioner_daemons (id, name, tags, version) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, tags = excluded.tags, version = excluded.version,"
        " last_seen_at = now()", (daemon_id, name, json.dumps(tags), version))


def acquire(conn: Connection, daemon_id: UUID, tags: dict[str, str]) -> Row | None:
    """Claim the oldest queued job this daemon may run, or None when the queue is empty."""
    conn.execute("UPDATE provisioner_daemons SET last_seen_at = now() WHERE id = %s", (daemon_id,))
    # In maintenance nothing is claimed; the guard's shared lock also keeps `maintenance enter` waiting
    # until this claim commits, so enter then sees the job running and drains it (docs/adr/0037).
    guard = conn.execute("SELECT active FROM maintenance_guard()").fetchone()
    if guard is not None and guard["active"]:
        return None
    return conn.execute(
        "UPDATE provisioner_jobs SET started_at = now(), heartbeat_at = now(), updated_at = now(), worker_id = %s"
        " WHERE id = (SELECT id FROM provisioner_jobs WHERE started_at IS NULL AND canceled_at IS NULL"
        "             AND tags <@ %s::jsonb ORDER BY created_at, id FOR UPDATE SKIP LOCKED LIMIT 1)"
        " RETURNING *", (daemon_id, json.dumps(tags))).fetchone()


def is_running_on(conn: Connection, job_id: UUID, daemon_id: UUID) -> bool:
    return conn.execute("SELECT 1 FROM provisioner_jobs WHERE id = %s AND worker_id = %s AND completed_at IS NULL",
                        (job_id, daemon_id)).fetchone() is not None


def heartbeat(conn: Connection, job_id: UUID, daemon_id: UUID) -> bool | None:
    """Note the daemon is alive; True if the job was canceled, None if the job is no longer its to run."""
    row = conn.execute(
        "UPDATE provisioner_jobs SET heartbeat_at = now(), updated_at = now()"
        " WHERE id = %s AND worker_id = %s AND completed_at IS NULL RETURNING canceled_at",
        (job_id, daemon_id)).fetchone()
    conn.execute("UPDATE provisioner_daemons SET last_seen_at = now() WHERE id = %s", (daemon_id,))
    return None if row is None else row["canceled_at"] is not None


def append_logs(conn: Connection, job_id: UUID, lines: list[tuple[str, str, str]]) -> None:
    """Add (stage, level, output) lines; listeners following the job are woken."""
    if not lines:
        return
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO provisioner_job_logs (job_id, stage, level, output) VALUES (%s, %s, %s, %s)",
                        [(job_id, stage, level, output) for stage, level, output in lines])
    conn.execute("SELECT pg_notify(%s, %s)", (LOGS_CHANNEL, str(job_id)))


def log_line(row: Row) -> LogResponse:
    """A log line as the API and the log follow (the gateway's server-sent events) show it."""
    return LogResponse(id=row["id"], created_at=row["created_at"], stage=row["stage"], level=row["level"],
                       output=row["output"])


def logs_after(conn: Connection, job_id: UUID, after: int, limit: int = 1000) -> list[Row]:
    return conn.execute(
        "SELECT id, created_at, stage, level, output FROM provisioner_job_logs WHERE job_id = %s AND id > %s"
        " ORDER BY id LIMIT %s", (job_id, after, limit)).fetchall()


def finish(conn: Connection, job_id: UUID, daemon_id: UUID, error: str = "") -> Row | None:
    """Mark a claimed job completed (failed when error is set); None if it was not this daemon's to end."""
    row = conn.execute(
        "UPDATE provisioner_jobs SET completed_at = now(), updated_at = now(), error = %s"
        " WHERE id = %s AND worker_id = %s AND completed_at IS NULL RETURNING *",
        (error, job_id, daemon_id)).fetchone()
    conn.execute("SELECT pg_notify(%s, %s)", (LOGS_CHANNEL, str(job_id)))
    return row


def request_cancel(conn: Connection, job_id: UUID) -> Row | None:
    """Cancel a job: a queued one ends at once, a running one is interrupted by its daemon."""
    row = conn.execute(
        "UPDATE provisioner_jobs SET canceled_at = now(), updated_at = now(),"
        " completed_at = CASE WHEN started_at IS NULL THEN now() END,"
        " error = CASE WHEN started_at IS NULL THEN 'Canceled before it started.' ELSE error END"
        " WHERE id = %s AND completed_at IS NULL AND canceled_at IS NULL RETURNING *", (job_id,)).fetchone()
    conn.execute("SELECT pg_notify(%s, %s)", (LOGS_CHANNEL, str(job_id)))
    return row


def reap(conn: Connection, heartbeat_timeout: timedelta) -> list[Row]:
    """Fail jobs whose daemon went silent or that outran their timeout; returns the jobs failed."""
    rows = conn.execute(
        "UPDATE provisioner_jobs SET completed_at = now(), updated_at = now(), error = CASE"
        "  WHEN heartbeat_at < now() - %s THEN"
        "   'The provisioner daemon running this job stopped responding (no heartbeat for ' || %s || 's), so the"
        " job was marked failed. The Terraform state written so far was kept; start the build again.'"
        "  ELSE 'The job ran longer than its timeout of ' || timeout_seconds || 's and was stopped.' END"
        " WHERE started_at IS NOT NULL AND completed_at IS NULL"
        "   AND (heartbeat_at < now() - %s OR started_at < now() - make_interval(secs => timeout_seconds + 60))"
        " RETURNING *",
        (heartbeat_timeout, int(heartbeat_timeout.total_seconds()), heartbeat_timeout)).fetchall()
    for row in rows:
        log.warning("provisioner_job_reaped", extra={"job_id": str(row["id"]), "error": row["error"]})
        conn.execute("SELECT pg_notify(%s, %s)", (LOGS_CHANNEL, str(row["id"])))
    return rows
