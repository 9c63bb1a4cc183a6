"""A workspace's status, read from its latest build's transition and the state of that build's job."""

from __future__ import annotations

from appliance.provisioner.jobs import JobStatus

TRANSITIONS = ("start", "stop", "delete")
_IN_PROGRESS = {"start": "starting", "stop": "stopping", "delete": "deleting"}
_DONE = {"start": "running", "stop": "stopped", "delete": "deleted"}


def build_status(transition: str, job: JobStatus) -> str:
    if job is JobStatus.PENDING:
        return "pending"
    if job is JobStatus.RUNNING:
        return _IN_PROGRESS[transition]
    if job is JobStatus.SUCCEEDED:
        return _DONE[transition]
    return job.value  # failed, canceling, canceled

