"""Maintenance mode: the appliance refuses writes while the installer upgrades, rolls back or restores it.

The state is one row in PostgreSQL, so every console worker, the in-process provisioners and
external daemons (through the API) see the same switch. Writers call `maintenance_guard()` (SQL,
migration 000010) in a transaction they keep open until they are done: it takes a shared advisory
lock and reads the row. `enter` turns the row on, then takes that lock exclusively: it is granted
only once every writer that saw "off" has finished, and any writer after it sees "on". So once
`enter` returns, nothing that passed the check can still commit (docs/adr/0037).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import psycopg

from appliance.audit.record import record
from appliance.db.database import Connection, Database
from appliance.errors import OperatorError, UnderMaintenance
from appliance.provisioner import jobs
from appliance.sdk.releases import MaintenanceStatus

# The advisory lock maintenance_guard() takes shared (0x4D41494E, "MAIN"); keep the two in step.
GUARD_LOCK = 0x4D41494E
POLL_SECONDS = 0.5  # how often enter looks for running jobs while it drains them
CANCEL_GRACE_SECONDS = 10.0  # after a cancel, how long a daemon gets to stop its job before enter ends it
CANCELLED_ERROR = "Canceled: the appliance entered maintenance ({reason}) while this job ran. Start it again."


@dataclass(frozen=True)
class RunningJob:
    id: str
    type: str

    def __str__(self) -> str:
        return f"{self.type} job {self.id}"


@dataclass(frozen=True)
class Entered:
    """What `enter` did: the state it left, and the jobs it had to cancel."""

    status: MaintenanceStatus
    cancelled: list[RunningJob]


def status(conn: Connection) -> MaintenanceStatus:
    """The state as a plain read (no lock): for status displays and the console's banner."""
    row = conn.execute("SELECT active, reason, since FROM maintenance").fetchone()
    assert row is not None  # migration 000010 inserts the one row
    return MaintenanceStatus(active=row["active"], reason=row["reason"], since=row["since"])


def guard(conn: Connection) -> MaintenanceStatus:
    """In a transaction held open until the write is done: the state, with `enter` kept waiting meanwhile."""
    row = conn.execute("SELECT active, reason, since FROM maintenance_guard()").fetchone()
    assert row is not None
    return MaintenanceStatus(active=row["active"], reason=row["reason"], since=row["since"])


def refusal(state: MaintenanceStatus) -> UnderMaintenance:
    assert state.since is not None
    return UnderMaintenance(state.reason or "maintenance", state.since.isoformat(timespec="seconds"))


@contextmanager
def writing(db: Database) -> Iterator[MaintenanceStatus]:
    """Hold the guard for a block of writes; raises UnderMaintenance instead when maintenance is on."""
    with db.transaction() as conn:
        state = guard(conn)
        if state.active:
            raise refusal(state)
        yield state


def enter(db: Database, reason: str, drain_timeout: timedelta, *, actor: str) -> Entered:
    """Turn maintenance on, wait for writers, drain running jobs; idempotent."""
    deadline = time.monotonic() + drain_timeout.total_seconds()
    with db.transaction() as conn:
        changed = conn.execute(
            "UPDATE maintenance SET active = true, reason = %s, since = now() WHERE NOT active RETURNING since",
            (reason,)).fetchone()
        if changed is not None:
            record(conn, actor=None, actor_name=actor, action="write", resource_type="maintenance",
                   target="maintenance", diff={"active": {"old": False, "new": True, "secret": False},
                                                "reason": {"old": None, "new": reason, "secret": False}})
    _wait_for_writers(db, drain_timeout)
    cancelled = _drain_jobs(db, deadline, reason, grace=min(CANCEL_GRACE_SECONDS, drain_timeout.total_seconds()))
    with db.reading() as conn:
        return Entered(status(conn), cancelled)


def leave(db: Database, *, actor: str) -> bool:
    """Turn maintenance off; False when it was already off."""
    with db.transaction() as conn:
        was = conn.execute(
            "UPDATE maintenance SET active = false, reason = NULL, since = NULL WHERE active"
            " RETURNING (SELECT reason FROM maintenance) AS reason").fetchone()
        if was is None:
            return False
        record(conn, actor=None, actor_name=actor, action="write", resource_type="maintenance",
               target="maintenance", diff={"active": {"old": True, "new": False, "secret": False},
                                            "reason": {"old": was["reason"], "new": None, "secret": False}})
    return True


def _wait_for_writers(db: Database, timeout: timedelta) -> None:
    """Take the guard lock exclusively (and let it go): returns once no writer that saw "off" is left."""
    try:
        with db.transaction() as conn:
            conn.execute(f"SET LOCAL lock_timeout = {max(1, int(timeout.total_seconds() * 1000))}")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (GUARD_LOCK,))
    except psycopg.errors.LockNotAvailable as err:
        raise OperatorError(
            f"A request was still writing {timeout.total_seconds():g} s after maintenance was turned on.",
            "Maintenance stays on and new writes are refused; run the command again to wait longer,"
            " or `appliance maintenance leave` to give up.") from err


def running_jobs(conn: Connection) -> list[RunningJob]:
    rows = conn.execute(
        "SELECT id, type FROM provisioner_jobs WHERE started_at IS NOT NULL AND completed_at IS NULL"
        " ORDER BY started_at, id").fetchall()
    return [RunningJob(str(row["id"]), row["type"]) for row in rows]


def _drain_jobs(db: Database, deadline: float, reason: str, *, grace: float) -> list[RunningJob]:
    """Wait for running jobs until the deadline; cancel those left, and end any that outlive the grace."""
    running = _wait_for_jobs(db, deadline)
    if not running:
        return []
    with db.transaction() as conn:
        for job in running:
            jobs.request_cancel(conn, UUID(job.id))
    still = {job.id for job in _wait_for_jobs(db, time.monotonic() + grace)}
    if still:
        with db.transaction() as conn:
            conn.execute(
                "UPDATE provisioner_jobs SET completed_at = now(), updated_at = now(), error = %s"
                " WHERE id = ANY(%s::uuid[]) AND completed_at IS NULL",
                (CANCELLED_ERROR.format(reason=reason), sorted(still)))
            for job_id in still:
                conn.execute("SELECT pg_notify(%s, %s)", (jobs.LOGS_CHANNEL, job_id))
    return running


def _wait_for_jobs(db: Database, deadline: float) -> list[RunningJob]:
    while True:
        with db.reading() as conn:
            running = running_jobs(conn)
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
