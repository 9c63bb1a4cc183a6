"""The job queue against real PostgreSQL: tag matching, concurrent claims, heartbeats and the reaper."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from appliance.db.database import Database
from appliance.provisioner import jobs

pytestmark = pytest.mark.integration


def _daemon(db: Database, tags: dict[str, str]) -> UUID:
    daemon_id = uuid4()
    with db.transaction() as conn:
        jobs.register_daemon(conn, daemon_id, "test", tags, "test")
    return daemon_id


def _enqueue(db: Database, tags: dict[str, str] | None = None) -> UUID:
    with db.transaction() as conn:
        return jobs.enqueue(conn, jobs.JobType.BUILD, initiator_id=None, timeout=timedelta(minutes=5), tags=tags)


def test_a_daemon_claims_only_jobs_whose_tags_it_has(fresh_db: str) -> None:
    db = Database(fresh_db)
    try:
        zoned = _enqueue(db, {"scope": "site", "zone": "lab"})
        plain = _daemon(db, {"scope": "site"})
        lab = _daemon(db, {"scope": "site", "zone": "lab"})
        with db.transaction() as conn:
            assert jobs.acquire(conn, plain, {"scope": "site"}) is None
        with db.transaction() as conn:
            claimed = jobs.acquire(conn, lab, {"scope": "site", "zone": "lab"})
        assert claimed is not None and claimed["id"] == zoned
    finally:
        db.close()


def test_concurrent_claims_never_hand_out_a_job_twice(fresh_db: str) -> None:
    db = Database(fresh_db, max_size=12)
    try:
        queued = {_enqueue(db) for _ in range(40)}
        claims: list[UUID] = []
        lock = threading.Lock()

        def claim_all() -> None:
            daemon = _daemon(db, dict(jobs.SITE_TAGS))
            while True:
                with db.transaction() as conn:
                    row = jobs.acquire(conn, daemon, dict(jobs.SITE_TAGS))
                if row is None:
                    return
                with lock:
                    claims.append(row["id"])

        workers = [threading.Thread(target=claim_all) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert sorted(claims) == sorted(queued), "every job claimed exactly once"
    finally:
        db.close()


def test_the_reaper_fails_a_silent_job_and_a_late_report_is_refused(fresh_db: str) -> None:
    db = Database(fresh_db)
    try:
        job_id = _enqueue(db)
        daemon = _daemon(db, dict(jobs.SITE_TAGS))
        with db.transaction() as conn:
            assert jobs.acquire(conn, daemon, dict(jobs.SITE_TAGS)) is not None
            assert jobs.heartbeat(conn, job_id, daemon) is False
        time.sleep(1.2)
        with db.transaction() as conn:
            reaped = jobs.reap(conn, timedelta(seconds=1))
        assert [r["id"] for r in reaped] == [job_id]
        with db.transaction() as conn:
            job = jobs.get(conn, job_id)
            assert job is not None and job.status is jobs.JobStatus.FAILED
            assert "stopped responding" in job.error
            assert jobs.heartbeat(conn, job_id, daemon) is None, "the daemon learns the job is no longer its"
            assert jobs.finish(conn, job_id, daemon) is None, "a late success does not overwrite the failure"
    finally:
        db.close()
