"""External daemons: the same runner, talking to the control plane over HTTPS with the pre-shared key.

An external daemon holds no database credentials: it can claim jobs and report on the jobs it
claimed, nothing else.
"""

from __future__ import annotations

import base64
import time
from typing import Any
from uuid import UUID, uuid4

import requests

from appliance import __version__
from appliance.errors import OperatorError
from appliance.provisioner.coordinator import JobSpec

KEY_HEADER = "Appliance-Provisioner-Key"
DAEMON_HEADER = "Appliance-Provisioner-Daemon"


class RemoteBackend:
    def __init__(self, url: str, key: str, *, name: str, tags: dict[str, str], ca_file: str | None = None,
                 timeout: float = 30.0) -> None:
        self._base = url.rstrip("/") + "/api/v2/provisionerd"
        self._name, self._tags, self._timeout = name, tags, timeout
        self.daemon_id = uuid4()
        self._session = requests.Session()
        self._session.headers.update({KEY_HEADER: key, DAEMON_HEADER: str(self.daemon_id),
                                      "User-Agent": f"appliance-provisionerd/{__version__}"})
        self._session.verify = ca_file if ca_file else True

    def _post(self, path: str, **kwargs: Any) -> requests.Response:
        response = self._session.post(self._base + path, timeout=self._timeout, **kwargs)
        if response.status_code == 401:
            raise OperatorError(f"The control plane refused this daemon: {response.json().get('message')}",
                                "Check --psk-file against provisioner_psk on the server.")
        return response

    def acquire(self) -> JobSpec | None:
        response = self._post("/acquire", json={"daemon_id": str(self.daemon_id), "name": self._name,
                                                "tags": self._tags, "version": __version__})
        if response.status_code == 204:
            return None
        response.raise_for_status()
        return JobSpec.from_json(response.json())

    def wait_for_work(self, timeout: float) -> None:
        time.sleep(timeout)

    def heartbeat(self, job_id: UUID) -> bool | None:
        response = self._post(f"/jobs/{job_id}/heartbeat")
        if response.status_code == 410:
            return None
        response.raise_for_status()
        return bool(response.json()["canceled"])

    def logs(self, job_id: UUID, lines: list[tuple[str, str, str]]) -> None:
        response = self._post(f"/jobs/{job_id}/logs", json={"logs": lines})
        if response.status_code != 410:  # a reaped job: the heartbeat will stop the run
            response.raise_for_status()

    def save_state(self, job_id: UUID, state: bytes) -> bool:
        response = self._session.put(f"{self._base}/jobs/{job_id}/state", data=state, timeout=self._timeout,
                                     headers={"Content-Type": "application/octet-stream"})
        return response.status_code == 200

    def complete_import(self, job_id: UUID, plan: dict[str, Any]) -> None:
        self._post(f"/jobs/{job_id}/import-complete", json={"plan": plan}).raise_for_status()

    def complete_build(self, job_id: UUID, state: bytes) -> None:
        self._post(f"/jobs/{job_id}/build-complete", data=state,
                   headers={"Content-Type": "application/octet-stream"}).raise_for_status()

    def fail(self, job_id: UUID, error: str, state: bytes | None) -> None:
        self._post(f"/jobs/{job_id}/fail", json={
            "error": error[:4000],
            "state": base64.b64encode(state).decode() if state is not None else None}).raise_for_status()
