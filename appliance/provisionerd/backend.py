"""How a daemon talks to the control plane: the one protocol both backends speak."""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

from appliance.sdk.provisionerd import JobSpec


class JobGone(Exception):
    """The control plane no longer assigns this job to this daemon (reaped, canceled or finished): stop it.

    Every report (state, completion, failure) raises it instead of answering quietly, so the daemon
    never treats as recorded what the control plane refused.
    """

    def __init__(self, job_id: UUID, reason: str = "") -> None:
        super().__init__(f"Job {job_id} is no longer assigned to this daemon" + (f": {reason}" if reason else "."))
        self.job_id = job_id


class Backend(Protocol):
    """In-process (SQL, appliance.provisioner.local) or over HTTPS with the pre-shared key (remote.py).

    The reports (save_state, complete_*, fail) return only once the control plane recorded them;
    otherwise they raise: JobGone, or the backend's own error once its retries are spent.
    """

    def acquire(self) -> JobSpec | None: ...
    def wait_for_work(self, timeout: float) -> None: ...
    def heartbeat(self, job_id: UUID) -> bool | None: ...
    def logs(self, job_id: UUID, lines: list[tuple[str, str, str]]) -> None: ...
    def save_state(self, job_id: UUID, state: bytes) -> None: ...
    def complete_import(self, job_id: UUID, plan: dict[str, Any]) -> None: ...
    def complete_build(self, job_id: UUID) -> None: ...
    def fail(self, job_id: UUID, error: str) -> None: ...
