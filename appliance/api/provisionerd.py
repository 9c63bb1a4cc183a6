"""/api/v2/provisionerd: where external provisioner daemons claim jobs and report back.

Daemons authenticate with the pre-shared key (header Appliance-Provisioner-Key), compared in
constant time; with no key configured, external daemons are refused outright. A daemon names
itself in Appliance-Provisioner-Daemon and may report only on the jobs it claimed.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from functools import partial
from typing import IO
from uuid import UUID

from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from appliance.api.blueprints import v2
from appliance.api.spec import endpoint, json_response
from appliance.auth.web import database, server_config
from appliance.errors import Gone, InvalidInput, TooLarge, Unauthorized
from appliance.provisioner import coordinator, jobs, redaction
from appliance.registry.site import internal_hosts
from appliance.sdk.meta import MessageResponse
from appliance.sdk.provisionerd import (
    DAEMON_HEADER,
    KEY_HEADER,
    MAX_STATE_BYTES,
    STATE_CHUNK_BYTES,
    AcquireRequest,
    CompleteImportRequest,
    FailJobRequest,
    HeartbeatResponse,
    JobLogsRequest,
    JobSpec,
)

TAG = "Provisioner daemons"


def _require_key() -> None:
    expected = server_config().provisioner_psk
    presented = request.headers.get(KEY_HEADER, "")
    if not expected:
        raise Unauthorized("External provisioner daemons are not enabled on this appliance.",
                           "Set provisioner_psk in /etc/appliance/appliance.toml and restart the server.")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("The provisioner key is missing or wrong.",
                           f"Send the appliance's pre-shared key in the {KEY_HEADER} header.")


def _uuid(raw: str, field: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError as err:
        raise InvalidInput(f"Invalid {field} {raw!r}.", "Give a UUID.", field=field) from err


def _not_assigned(job_id: UUID) -> Gone:
    """410: the job was reaped, canceled or finished away from this daemon, which should stop running it."""
    return Gone(f"Job {job_id} is no longer assigned to this daemon.",
                "It was reaped after missing heartbeats, canceled, or already finished; nothing was recorded. "
                "Stop running it; its workspace's owner can start the build again.")


def _daemon() -> UUID:
    return _uuid(request.headers.get(DAEMON_HEADER, ""), "daemon id")


def _site_secrets() -> tuple[str, ...]:
    """What this appliance hides in every job's logs; an external daemon knows none of it but its key."""
    return redaction.site_secrets(server_config(), database().conninfo)


@endpoint(v2, "POST", "/provisionerd/acquire", summary="Claim the next job (204 when none)", tag=TAG,
          body=AcquireRequest, response=JobSpec, is_authenticated=False, errors=(401,))
def acquire(body: AcquireRequest) -> Response:
    _require_key()
    config = server_config()
    with database().transaction() as conn:
        jobs.register_daemon(conn, body.daemon_id, body.name, body.tags or dict(jobs.SITE_TAGS), body.version)
        site = coordinator.JobSite.for_config(config, current_app.extensions["appliance.ca"])
        spec = coordinator.acquire(conn, body.daemon_id, body.tags or dict(jobs.SITE_TAGS), site,
                                   config.provisioner_heartbeat_timeout)
    if spec is None:
        return Response(status=204)
    return json_response(spec)


@endpoint(v2, "POST", "/provisionerd/jobs/<job>/heartbeat", summary="Report a job alive; learn of a cancel",
          tag=TAG, response=HeartbeatResponse, is_authenticated=False, errors=(401, 410))
def heartbeat(job: str) -> Response:
    _require_key()
    with database().transaction() as conn:
        canceled = jobs.heartbeat(conn, job_id := _uuid(job, "job"), _daemon())
    if canceled is None:
        raise _not_assigned(job_id)
    return json_response(HeartbeatResponse(canceled=canceled))


@endpoint(v2, "POST", "/provisionerd/jobs/<job>/logs", summary="Append log lines", tag=TAG,
          body=JobLogsRequest, response=MessageResponse, is_authenticated=False, errors=(401, 410))
def append_logs(job: str, body: JobLogsRequest) -> Response:
    _require_key()
    job_id = _uuid(job, "job")
    with database().transaction() as conn:
        if not jobs.is_running_on(conn, job_id, _daemon()):
            raise _not_assigned(job_id)
        coordinator.append_logs(conn, job_id, body.logs, _site_secrets())
    return json_response(MessageResponse(message=f"{len(body.logs)} line(s) stored."))


def _state_body() -> Iterator[bytes]:
    """The request body a chunk at a time, under the state route's own bound (not the app's 1 MiB)."""
    request.max_content_length = MAX_STATE_BYTES
    if (request.content_length or 0) > MAX_STATE_BYTES:
        raise _state_too_large()
    return _chunks(request.stream)


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    try:
        yield from iter(partial(stream.read, STATE_CHUNK_BYTES), b"")
    except RequestEntityTooLarge as err:  # a chunked body that ran past the bound
        raise _state_too_large() from err


def _state_too_large() -> TooLarge:
    return TooLarge(f"The Terraform state is larger than {MAX_STATE_BYTES >> 20} MiB, the most this appliance stores.",
                    "Split the template into smaller workspaces; the state stays on the daemon's host until then.")


@endpoint(v2, "PUT", "/provisionerd/jobs/<job>/state", summary="Save the Terraform state written so far (streamed)",
          tag=TAG, response=MessageResponse, is_authenticated=False, errors=(401, 410, 413),
          raw_body="application/octet-stream")
def save_state(job: str) -> Response:
    _require_key()
    job_id = _uuid(job, "job")
    body = _state_body()
    with database().transaction() as conn:
        if not coordinator.save_state(conn, job_id, _daemon(), body):
            raise _not_assigned(job_id)
    return json_response(MessageResponse(message="State saved."))


@endpoint(v2, "POST", "/provisionerd/jobs/<job>/import-complete", summary="Finish an import with its plan",
          tag=TAG, body=CompleteImportRequest, response=MessageResponse, is_authenticated=False, errors=(401, 410))
def complete_import(job: str, body: CompleteImportRequest) -> Response:
    _require_key()
    job_id = _uuid(job, "job")
    with database().transaction() as conn:
        if not coordinator.complete_import(conn, job_id, _daemon(), body.plan, _site_secrets(),
                                           internal_hosts(server_config())):
            raise _not_assigned(job_id)
    return json_response(MessageResponse(message="Import recorded."))


@endpoint(v2, "POST", "/provisionerd/jobs/<job>/build-complete",
          summary="Finish a build with the state last saved (PUT .../state first)", tag=TAG,
          response=MessageResponse, is_authenticated=False, errors=(401, 410))
def complete_build(job: str) -> Response:
    _require_key()
    job_id = _uuid(job, "job")
    with database().transaction() as conn:
        if not coordinator.complete_build(conn, job_id, _daemon()):
            raise _not_assigned(job_id)
    return json_response(MessageResponse(message="Build recorded."))


@endpoint(v2, "POST", "/provisionerd/jobs/<job>/fail", summary="Fail a job, keeping the state saved so far",
          tag=TAG, body=FailJobRequest, response=MessageResponse, is_authenticated=False, errors=(401, 410))
def fail(job: str, body: FailJobRequest) -> Response:
    _require_key()
    job_id = _uuid(job, "job")
    with database().transaction() as conn:
        if not coordinator.fail(conn, job_id, _daemon(), body.error, _site_secrets()):
            raise _not_assigned(job_id)
    return json_response(MessageResponse(message="Failure recorded."))
