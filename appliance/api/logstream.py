"""Job logs as JSON; following them live is the gateway's job (appliance/gateway/logs.py).

A follow (`?follow=true` or `Accept: text/event-stream`) holds its connection for minutes, which
must never pin a WSGI worker: nginx, or the embedded front of `appliance server`, routes it to
the gateway. One that reaches this app anyway was misrouted, and is told so instead of streamed.
"""

from __future__ import annotations

from uuid import UUID

from flask import Response, request

from appliance.api.spec import json_response
from appliance.auth.web import database
from appliance.errors import RequestError
from appliance.provisioner import jobs
from appliance.responses import job_response
from appliance.sdk.jobs import LogListResponse


class Misdirected(RequestError):
    status = 421


def wants_stream(follow: bool, accept: str) -> bool:
    """The rule nginx's map and the gateway apply too: a follow flag or an event-stream Accept."""
    return follow or "text/event-stream" in accept


def job_logs_response(job_id: UUID, after: int, follow: bool) -> Response:
    """The caller has been authorized for the job; answer its log lines after `after` as JSON."""
    if wants_stream(follow, request.headers.get("Accept", "")):
        raise Misdirected("Log follows are served by the gateway, and this request reached the WSGI app.",
                          "Route ?follow=true and 'Accept: text/event-stream' log requests to the gateway "
                          "socket (the nginx role does); `appliance server` does it by itself.")
    with database().transaction() as conn:
        job = jobs.get(conn, job_id)
        rows = jobs.logs_after(conn, job_id, after)
    assert job is not None
    return json_response(LogListResponse(logs=[jobs.log_line(r) for r in rows], job=job_response(job)))
