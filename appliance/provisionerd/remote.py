"""External daemons: the same runner, talking to the control plane over HTTPS with the pre-shared key.

An external daemon holds no database credentials: it can claim jobs and report on the jobs it
claimed, nothing else. Every call goes through the sdk Client (retries with jitter on connection
errors and 502/503) and every answer is parsed with the sdk's wire models.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID, uuid4

import requests
from pydantic import BaseModel

from appliance import __version__
from appliance.errors import OperatorError
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

_RAW = {"Content-Type": "application/octet-stream"}


class ControlPlaneError(Exception):
    """The control plane could not be reached or failed a request: the daemon backs off and tries again.

    Deliberately not an OperatorError, which stops the daemon: a restarting control plane is not a
    reason for every daemon to exit.
    """


class RemoteBackend:
    def __init__(self, url: str, key: str, *, name: str, tags: dict[str, str], ca_file: str | None = None,
                 timeout: float = 30.0) -> None:
        self._name, self._tags = name, tags
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
            raise ControlPlaneError(f"{method} {PATH}{path} failed: {api_error(response).message}")
        return response

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
        self._call("POST", f"/jobs/{job_id}/logs", body=body, ok=(410,))

    def save_state(self, job_id: UUID, state: bytes) -> bool:
        return self._send("PUT", f"/jobs/{job_id}/state", data=state).status_code == 200

    def complete_import(self, job_id: UUID, plan: dict[str, Any]) -> None:
        self._call("POST", f"/jobs/{job_id}/import-complete", body=CompleteImportRequest(plan=plan))

    def complete_build(self, job_id: UUID, state: bytes) -> None:
        self._call("POST", f"/jobs/{job_id}/build-complete", data=state)

    def fail(self, job_id: UUID, error: str, state: bytes | None) -> None:
        body = FailJobRequest(error=error[:MAX_ERROR_CHARS], state=state)
        self._call("POST", f"/jobs/{job_id}/fail", body=body)
