"""Job logs as JSON, or followed live as server-sent events until the job ends.

Followers poll the log table (a cheap indexed range read) rather than hold a connection
open, so a browser tab left on a build page does not pin a pool connection. A stream ends
after STREAM_SECONDS; EventSource reconnects with Last-Event-ID and carries on from there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from flask import Response, request, stream_with_context

from appliance.api.spec import json_response
from appliance.auth.web import database
from appliance.db.database import Database, Row
from appliance.provisioner import jobs
from appliance.responses import job_response
from appliance.sdk.jobs import LogListResponse

POLL_SECONDS = 0.3
STREAM_SECONDS = 300.0


def _log(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "created_at": row["created_at"].isoformat(), "stage": row["stage"],
            "level": row["level"], "output": row["output"]}


def _event(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n"


def _follow(db: Database, job_id: UUID, after: int) -> Iterator[str]:
    stop_at = time.monotonic() + STREAM_SECONDS
    yield "retry: 1000\n\n"
    while time.monotonic() < stop_at:
        with db.transaction() as conn:
            job = jobs.get(conn, job_id)
            rows = jobs.logs_after(conn, job_id, after)
        for row in rows:
            after = row["id"]
            yield _event("log", _log(row), row["id"])
        if rows:
            continue
        if job is None or job.finished:
            yield _event("end", {"status": job.status.value if job else "missing", "error": job.error if job else ""})
            return
        time.sleep(POLL_SECONDS)


def job_logs_response(job_id: UUID, after: int, follow: bool) -> Response:
    """The caller has been authorized for the job; answer JSON, or an SSE stream when following."""
    resumed = request.headers.get("Last-Event-ID", "")
    after = int(resumed) if resumed.isdigit() else after
    wants_stream = follow or "text/event-stream" in request.headers.get("Accept", "")
    db = database()
    if wants_stream:
        response = Response(stream_with_context(_follow(db, job_id, after)), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx must pass events through as they come
        return response
    with db.transaction() as conn:
        job = jobs.get(conn, job_id)
        rows = jobs.logs_after(conn, job_id, after)
    assert job is not None
    return json_response(LogListResponse.model_validate({"logs": [_log(r) for r in rows], "job": job_response(job)}))
