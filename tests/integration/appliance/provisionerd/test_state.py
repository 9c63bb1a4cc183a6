"""External daemons never lose terraform state: large states stream in, refusals raise or are retried,
late reports get 410, and a control plane restarted mid-apply still ends up with what terraform wrote.

Real PostgreSQL, the real server (embedded front, waitress), real daemons over loopback and real terraform.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from appliance.provisioner.local import start_in_process
from appliance.provisionerd.backend import JobGone
from appliance.provisionerd.remote import RemoteBackend
from appliance.sdk.provisionerd import DAEMON_HEADER, KEY_HEADER, PATH, JobSpec, JobType
from tests.support.api import Api
from tests.support.postgres import create_database, drop_database, free_port
from tests.support.server import LiveServer, live_server
from tests.support.workspaces import (
    MINIMAL,
    TEMPLATES,
    build_logs,
    external_daemon,
    push,
    wait_build,
    wait_for_log,
    wait_version,
)

pytestmark = pytest.mark.integration
PSK = secrets.token_urlsafe(32)
DB_NAME = "provisionerd_state"


@pytest.fixture(scope="module")
def state_db(admin_conninfo: str, template_db: str) -> Iterator[str]:
    yield create_database(admin_conninfo, DB_NAME, template=template_db)
    drop_database(admin_conninfo, DB_NAME)


@pytest.fixture
def serve(state_db: str, appliance_mirror: Path, tmp_path: Path) -> Any:
    """Starts the control plane (again, on the same port if asked) against an emptied database."""
    with psycopg.connect(state_db, autocommit=True) as conn:
        conn.execute("TRUNCATE users, files, templates, template_versions, provisioner_jobs, provisioner_daemons,"
                     " workspaces, workspace_builds RESTART IDENTITY CASCADE")

    @contextmanager
    def start(*, heartbeat_timeout: float, port: int | None = None) -> Iterator[LiveServer]:
        with live_server(state_db, port=port, mirror_dir=appliance_mirror, provisioner_dir=tmp_path / "provisioner",
                         provisioner_psk=PSK,
                         provisioner_heartbeat_timeout=timedelta(seconds=heartbeat_timeout)) as live:
            yield live

    return start


def _owner(url: str) -> Api:
    api = Api(url)
    api.create_first_user("owner")
    return api.as_user(api.login("owner"))


def _claimed_build(live: LiveServer, owner: Api) -> tuple[RemoteBackend, JobSpec, str]:
    """A build of the minimal template, claimed over HTTPS by a daemon that then reports by hand."""
    importer = start_in_process(live.config, live.db, count=1)
    try:
        wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    finally:
        importer.stop()
    created = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev", "parameters": {}})
    assert created.status_code == 201, created.text
    backend = RemoteBackend(live.url, PSK, name="by-hand", tags={}, retry_seconds=60)
    spec = backend.acquire()
    assert spec is not None and spec.type is JobType.BUILD
    return backend, spec, created.json()["latest_build"]["id"]


def _state(size: int) -> bytes:
    return json.dumps({"version": 4, "terraform_version": "1.9.0", "serial": 3, "lineage": "test", "resources": [],
                       "outputs": {"pad": {"type": "string", "value": "x" * size}}}).encode()


def _stored_state(owner: Api, build_id: str) -> bytes:
    response = owner.get(f"/api/v2/workspacebuilds/{build_id}/state")
    assert response.status_code == 200, response.text[:500]
    return response.content


@pytest.mark.security(finding=4)
def test_a_20_mib_state_is_stored_whole_and_the_build_ends_with_it(serve: Any) -> None:
    with serve(heartbeat_timeout=60) as live:
        owner = _owner(live.url)
        backend, spec, build_id = _claimed_build(live, owner)
        state = _state(20 << 20)
        backend.save_state(spec.id, state)
        backend.complete_build(spec.id)
        build = wait_build(owner, build_id)
        assert build["job"]["status"] == "succeeded", build["job"]["error"]
        assert _stored_state(owner, build_id) == state


@pytest.mark.security(finding=4)
def test_a_state_upload_the_server_fails_is_retried_until_it_is_stored(serve: Any, admin_conninfo: str) -> None:
    with serve(heartbeat_timeout=60) as live:
        owner = _owner(live.url)
        backend, spec, build_id = _claimed_build(live, owner)
        # PostgreSQL drops every connection of the app (as on a restart or a failover): the app's next
        # requests fail with 500 until its pool has reconnected.
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            dropped = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                   " WHERE datname = %s AND pid <> pg_backend_pid()", (DB_NAME,)).fetchone()
        assert dropped is not None and dropped[0] > 0
        state = _state(2 << 20)
        backend.save_state(spec.id, state)
        assert _stored_state(owner, build_id) == state


@pytest.mark.security(finding=4)
def test_a_report_for_a_reaped_job_answers_410_and_raises_job_gone(serve: Any) -> None:
    with serve(heartbeat_timeout=2) as live:
        owner = _owner(live.url)
        backend, spec, build_id = _claimed_build(live, owner)
        reaped = wait_build(owner, build_id, timeout=60)  # this daemon sends no heartbeat
        assert "stopped responding" in reaped["job"]["error"]

        late = requests.post(f"{live.url}{PATH}/jobs/{spec.id}/build-complete", timeout=10,
                             headers={KEY_HEADER: PSK, DAEMON_HEADER: str(backend.daemon_id)})
        assert late.status_code == 410, late.text
        assert late.json()["message"] == f"Job {spec.id} is no longer assigned to this daemon."
        assert "reaped" in late.json()["detail"]
        started = time.monotonic()
        for report in (lambda: backend.save_state(spec.id, _state(10)), lambda: backend.complete_build(spec.id),
                       lambda: backend.fail(spec.id, "late")):
            with pytest.raises(JobGone, match=str(spec.id)):
                report()
        assert time.monotonic() - started < 5, "a 410 is final: never retried"
        assert wait_build(owner, build_id)["job"]["error"] == reaped["job"]["error"], "the late reports changed nothing"


def _wait_for_line(log: Path, text: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in log.read_text().splitlines() if text in line]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in the daemon's log:\n{log.read_text()[-3000:]}")


@pytest.mark.security(finding=4)
def test_a_daemon_whose_job_was_reaped_logs_an_error_naming_the_job(
        serve: Any, appliance_mirror: Path, tmp_path: Path) -> None:
    with serve(heartbeat_timeout=3) as live:
        owner = _owner(live.url)
        daemon = external_daemon(live.url, PSK, tmp_path / "daemon", appliance_mirror)
        try:
            wait_version(owner, "slow", push(owner, TEMPLATES / "slow", "slow")["id"])
            created = owner.post("/api/v2/workspaces", json={"template": "slow", "name": "dev",
                                                             "parameters": {"delay": "60"}}).json()
            build_id, job_id = created["latest_build"]["id"], created["latest_build"]["job"]["id"]
            wait_for_log(owner, build_id, "holding for 60s")
            daemon.send_signal(signal.SIGSTOP)  # silent past the heartbeat timeout: the job is reaped
            assert "stopped responding" in wait_build(owner, build_id, timeout=60)["job"]["error"]
            daemon.send_signal(signal.SIGCONT)
            line = _wait_for_line(tmp_path / "daemon" / "daemon.log", "provisioner_job_gone")
        finally:
            daemon.send_signal(signal.SIGCONT)
            daemon.terminate()
            daemon.wait(60)
    assert " error " in f" {line} " and f"job_id={job_id}" in line, line


@pytest.mark.security(finding=4)
def test_restarting_the_control_plane_mid_apply_keeps_the_state_terraform_wrote(
        serve: Any, appliance_mirror: Path, tmp_path: Path) -> None:
    port = free_port()
    daemon = None
    try:
        with serve(heartbeat_timeout=60, port=port) as first:
            owner = _owner(first.url)
            daemon = external_daemon(first.url, PSK, tmp_path / "daemon", appliance_mirror)
            wait_version(owner, "bigstate", push(owner, TEMPLATES / "bigstate", "bigstate")["id"])
            # 1.5 MiB of padding, held twice (input and output): a 3 MiB state, above any JSON body's bound.
            created = owner.post("/api/v2/workspaces", json={"template": "bigstate", "name": "dev",
                                                             "parameters": {"kib": "1536", "delay": "4"}}).json()
            build_id = created["latest_build"]["id"]
            try:
                wait_for_log(owner, build_id, "holding for 4s")
            except AssertionError as err:
                raise AssertionError((tmp_path / "daemon" / "daemon.log").read_text()[-5000:]) from err
        # The control plane is down while terraform finishes the apply and writes its final state.
        time.sleep(5)
        with serve(heartbeat_timeout=60, port=port):
            build = wait_build(owner, build_id, timeout=240)
            assert build["job"]["status"] == "succeeded", build_logs(owner, build_id)
            state = json.loads(_stored_state(owner, build_id))
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)
    written = {(r["type"], r["name"]): r["instances"][0]["attributes"] for r in state["resources"]}
    assert len(written["terraform_data", "pad"]["input"]["value"]) == 1536 * 1024
    assert ("terraform_data", "slow") in written, "the resource created while the console was down is recorded"
    assert ("appliance_agent", "main") in written
