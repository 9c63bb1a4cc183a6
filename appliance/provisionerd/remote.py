"""External daemons: the same runner, talking to the control plane over HTTPS with the pre-shared key.

An external daemon holds no database credentials: it can claim jobs and report on the jobs it
claimed, nothing else. Every call goes through the sdk Client (retries with jitter on connection
errors and 502/503) and every answer is parsed with the sdk's wire models. A report (state,
completion, failure) is retried on top of that, with backoff and jitter, for as long as the control
plane may take to come back (a restart, PostgreSQL failing over): any transport failure, 408, 429
and 5xx. A 410 raises JobGone; any other refusal (413, 400) raises at once, never retried.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import UUID, uuid4

import requests
import tenacity
from pydantic import BaseModel

from appliance import __version__
from appliance.errors import OperatorError
from appliance.provisionerd.backend import JobGone
from appliance.sdk.client import Client, api_error
from appliance.sdk.provisionerd import (
    DAEMON_HEADER,
    KEY_HEADER,
    MAX_ERROR_CHARS,
    PATH,
    AcquireRequest,
    CompleteImportRequest,
    FailJobRequest,
    HeartbeatResponse,
    JobLogsRequest,
    JobSpec,
)

log = logging.getLogger(__name__)
_RAW = {"Content-Type": "application/octet-stream"}
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # the server may answer otherwise next time
REPORT_RETRY_SECONDS = 300.0  # longer than a console restart with its embedded PostgreSQL


class ControlPlaneError(Exception):
    """The control plane could not be reached or failed a request: the daemon backs off and tries again.

    Deliberately not an OperatorError, which stops the daemon: a restarting control plane is not a
    reason for every daemon to exit. `status` is the HTTP answer, None when there was none.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def is_retryable(self) -> bool:
        return self.status is None or self.status in RETRY_STATUSES


def _may_pass(error: BaseException) -> bool:
    return isinstance(error, ControlPlaneError) and error.is_retryable


def _log_retry(job_id: UUID, path: str) -> Any:
    def log_it(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("provisioner_report_retrying", extra={
            "job_id": str(job_id), "call": path.lstrip("/"), "attempt": state.attempt_number, "error": str(error),
            "retry_in_s": round(state.upcoming_sleep, 1)})
    return log_it


class RemoteBackend:
    def __init__(self, url: str, key: str, *, name: str, tags: dict[str, str], ca_file: str | None = None,
                 timeout: float = 30.0, retry_seconds: float = REPORT_RETRY_SECONDS) -> None:
        self._name, self._tags = name, tags
        self._retry_seconds = retry_seconds
        self.daemon_id = uuid4()
        self._client = Client(url, ca_file=ca_file, timeout=timeout, user_agent=f"appliance-provisionerd/{__version__}",
                              headers={KEY_HEADER: key, DAEMON_HEADER: str(self.daemon_id)})

    def _send(self, method: str, path: str, *, body: BaseModel | None = None,
              data: bytes | None = None) -> requests.Response:
        """The answer to one call; 401 stops the daemon (retrying will not help), transport trouble does not."""
        try:
            response = self._client.send(method, PATH + path, data=data, headers=_RAW if data is not None else None,
                                         body=body.model_dump(mode="json") if body is not None else None)
        except OperatorError as err:  # unreachable, timed out or TLS refused, after the client's own retries
            raise ControlPlaneError(str(err)) from err
        if response.status_code == 401:
            raise OperatorError(f"The control plane refused this daemon: {api_error(response).server_message}",
                                "Check --psk-file against provisioner_psk on the server.")
        return response

    def _call(self, method: str, path: str, *, body: BaseModel | None = None, data: bytes | None = None,
              ok: tuple[int, ...] = ()) -> requests.Response:
        """As _send; any other refusal or server error is a ControlPlaneError naming the call."""
        response = self._send(method, path, body=body, data=data)
        if response.status_code >= 400 and response.status_code not in ok:
            raise ControlPlaneError(f"{method} {PATH}{path} failed: {api_error(response).message}",
                                    response.status_code)
        return response

    def _report(self, job_id: UUID, method: str, path: str, *, body: BaseModel | None = None,
                data: bytes | None = None) -> None:
        """A report on a job, retried while the failure may pass; raises JobGone on 410, else the last error."""
        # 0.5 s, 1 s, 2 s ... at most 30 s, plus up to 1 s of jitter so daemons do not return in lock step.
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_may_pass), reraise=True,
            wait=tenacity.wait_exponential(multiplier=0.5, max=30) + tenacity.wait_random(0, 1),
            stop=tenacity.stop_before_delay(self._retry_seconds), before_sleep=_log_retry(job_id, path))
        try:
            retrying(self._call, method, f"/jobs/{job_id}{path}", body=body, data=data)
        except ControlPlaneError as err:
            if err.status == 410:
                raise JobGone(job_id, str(err)) from err
            raise

    def acquire(self) -> JobSpec | None:
        request = AcquireRequest(daemon_id=self.daemon_id, name=self._name, tags=self._tags, version=__version__)
        response = self._call("POST", "/acquire", body=request)
        if response.status_code == 204:
            return None
        return JobSpec.model_validate(response.json())

    def wait_for_work(self, timeout: float) -> None:
        time.sleep(timeout)  # no push channel over HTTPS yet: an external daemon polls

    def heartbeat(self, job_id: UUID) -> bool | None:
        response = self._call("POST", f"/jobs/{job_id}/heartbeat", ok=(410,))
        if response.status_code == 410:
            return None
        return HeartbeatResponse.model_validate(response.json()).canceled

    def logs(self, job_id: UUID, lines: list[tuple[str, str, str]]) -> None:
        # 410 is a reaped job: the next heartbeat stops the run, so the lines are dropped quietly.
        body = JobLogsRequest.model_validate({"logs": lines})
        try:
            self._call("POST", f"/jobs/{job_id}/logs", body=body, ok=(410,))
        except ControlPlaneError as err:
            if err.is_retryable:
                raise  # the runner keeps the lines for its next flush
            log.warning("provisioner_logs_refused", extra={"job_id": str(job_id), "lines": len(lines),
                                                           "error": str(err)})

    def save_state(self, job_id: UUID, state: bytes) -> None:
        self._report(job_id, "PUT", "/state", data=state)

    def complete_import(self, job_id: UUID, plan: dict[str, Any]) -> None:
        self._report(job_id, "POST", "/import-complete", body=CompleteImportRequest(plan=plan))

    def complete_build(self, job_id: UUID) -> None:
        self._report(job_id, "POST", "/build-complete")

    def fail(self, job_id: UUID, error: str) -> None:
        self._report(job_id, "POST", "/fail", body=FailJobRequest(error=error[:MAX_ERROR_CHARS]))
