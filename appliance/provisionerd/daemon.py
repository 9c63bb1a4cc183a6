"""A provisioner daemon's loop: claim a job, run it, repeat; stop between jobs when asked."""

from __future__ import annotations

import logging
import threading

from appliance.errors import OperatorError
from appliance.provisionerd.backend import Backend
from appliance.provisionerd.runner import JobRunner

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, backend: Backend, runner: JobRunner, poll_interval: float = 1.0) -> None:
        self._backend, self._runner = backend, runner
        self._poll_interval = poll_interval
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run_once(self) -> bool:
        """Run one job if there is one; False when the queue was empty."""
        spec = self._backend.acquire()
        if spec is None:
            return False
        log.info("provisioner_job_started", extra={"job_id": str(spec.id), "type": spec.type.value})
        self._runner.run(spec)
        log.info("provisioner_job_finished", extra={"job_id": str(spec.id)})
        return True

    def run_forever(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                busy = self.run_once()
                failures = 0
            except OperatorError:  # refused or misconfigured: retrying will not help
                raise
            except Exception:  # the control plane may be restarting: back off, keep the daemon alive
                failures += 1
                log.warning("provisioner_poll_failed", exc_info=True)
                busy = False
            if failures:
                self._stopping.wait(min(30.0, self._poll_interval * (2 ** min(failures, 6))))
            elif not busy:
                self._backend.wait_for_work(self._poll_interval)
