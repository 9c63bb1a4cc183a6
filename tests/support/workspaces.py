"""Test helpers for templates and workspaces: push through the real API, wait for jobs to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from appliance.templates.archive import source_archive
from tests.support.api import Api

REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "examples" / "templates" / "minimal"
TEMPLATES = Path(__file__).resolve().parent / "templates"
FINISHED = ("succeeded", "failed", "canceled")


def push(api: Api, directory: Path, name: str, *, activate: bool = True) -> dict[str, Any]:
    """Upload a directory as a new version of template `name` (created if missing); returns the version."""
    upload = api.post("/api/v2/files", data=source_archive(directory), headers={"Content-Type": "application/x-tar"})
    assert upload.status_code == 201, upload.text
    if api.get(f"/api/v2/templates/{name}").status_code == 404:
        created = api.post("/api/v2/templates", json={"name": name})
        assert created.status_code == 201, created.text
    version = api.post(f"/api/v2/templates/{name}/versions",
                       json={"file_hash": upload.json()["hash"], "activate": activate})
    assert version.status_code == 201, version.text
    body: dict[str, Any] = version.json()
    return body


def _wait_finished(api: Api, path: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Any] = api.get(path).json()
        if found["job"]["status"] in FINISHED:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"the job behind {path} did not finish in {timeout}s")


def wait_version(api: Api, template: str, version_id: str, timeout: float = 180.0) -> dict[str, Any]:
    return _wait_finished(api, f"/api/v2/templates/{template}/versions/{version_id}", timeout)


def wait_build(api: Api, build_id: str, timeout: float = 180.0) -> dict[str, Any]:
    return _wait_finished(api, f"/api/v2/workspacebuilds/{build_id}", timeout)


def wait_for_log(api: Api, build_id: str, text: str, timeout: float = 120.0) -> None:
    """Wait until a build's log shows `text` (e.g. a template's own marker line)."""
    deadline = time.monotonic() + timeout
    while text not in build_logs(api, build_id):
        assert time.monotonic() < deadline, build_logs(api, build_id)
        time.sleep(0.2)


def build_logs(api: Api, build_id: str) -> str:
    logs = api.get(f"/api/v2/workspacebuilds/{build_id}/logs").json()["logs"]
    return "\n".join(f"[{line['stage']}] {line['output']}" for line in logs)


def transition(api: Api, workspace_id: str, what: str, **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v2/workspaces/{workspace_id}/builds", json={"transition": what, **body})
    assert response.status_code == 201, response.text
    return wait_build(api, response.json()["id"])


def external_daemon(url: str, psk: str, work: Path, mirror: Path, *, name: str = "external") -> subprocess.Popen[str]:
    """`appliance provisionerd start` as its own process, beating every second; it logs to work/daemon.log."""
    key = work / "psk"
    work.mkdir(parents=True, exist_ok=True)
    key.write_text(psk)
    with (work / "daemon.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "appliance", "provisionerd", "start", "--url", url, "--psk-file", str(key),
             "--work-dir", str(work / "work"), "--mirror", str(mirror), "--heartbeat", "1", "--name", name],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=log, text=True)
