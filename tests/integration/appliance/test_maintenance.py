"""Maintenance mode as users, API clients and daemons see it: writes refused with the reason, reads served,
`enter` waiting for writes in flight and draining running jobs, and no job claimed while it is on."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from appliance.maintenance import GUARD_LOCK
from appliance.sdk.provisionerd import DAEMON_HEADER, KEY_HEADER
from tests.support.admin_cli import Admin, admin_cli, admin_env, maintenance_off
from tests.support.api import Api, console_session
from tests.support.cli import COMMAND
from tests.support.server import LiveServer, live_server
from tests.support.waiting import wait_until
from tests.support.workspaces import MINIMAL, push


@pytest.fixture
def admin(api: Api, shared_conninfo: str) -> Iterator[Admin]:
    """`appliance ARGS` against the shared database (emptied by `api`); leaves maintenance off afterwards."""
    yield admin_cli(shared_conninfo)
    maintenance_off(shared_conninfo)

PSK = "maintenance-test-key"
CSRF_FIELD = 'name="csrf_token" value="'


def _csrf(html: str) -> str:
    return html.split(CSRF_FIELD, 1)[1].split('"', 1)[0]


def test_maintenance_enter_leave_and_status_are_idempotent(admin: Admin) -> None:
    assert json.loads(admin("maintenance", "status", "--output", "json").stdout) == {
        "active": False, "reason": None, "since": None}
    admin("maintenance", "enter", "--reason", "upgrade to 1.1.0", "--drain-timeout", "5")
    first = json.loads(admin("maintenance", "status", "--output", "json").stdout)
    assert first["active"] and first["reason"] == "upgrade to 1.1.0" and first["since"]
    again = admin("maintenance", "enter", "--reason", "upgrade to 1.1.0")
    assert "Maintenance is on" in again.stdout
    assert json.loads(admin("maintenance", "status", "--output", "json").stdout) == first
    admin("maintenance", "leave")
    assert "already off" in admin("maintenance", "leave").stdout
    assert json.loads(admin("maintenance", "status", "--output", "json").stdout)["active"] is False


def test_writes_get_503_naming_the_upgrade_reads_work_and_leave_restores_writes(
        admin: Admin, owner_api: Api, server: LiveServer) -> None:
    admin("maintenance", "enter", "--reason", "upgrade to 1.5.0", "--drain-timeout", "5")
    refused = owner_api.post("/api/v2/templates", json={"name": "during"})
    assert refused.status_code == 503
    body = refused.json()
    assert "upgrade to 1.5.0" in body["message"] and "since" in body["message"]
    assert "Retry" in body["detail"]
    assert owner_api.get("/api/v2/users/me").status_code == 200
    assert owner_api.get("/api/v2/templates").status_code == 200
    status = owner_api.get("/api/v2/maintenance").json()
    assert status["active"] and status["reason"] == "upgrade to 1.5.0"
    # Logging in still works during maintenance (an exempt write).
    assert Api(server.url).login("owner")

    browser = console_session(server.url, "owner")
    page = browser.get(server.url + "/account", timeout=10)
    assert "Maintenance: upgrade to 1.5.0" in page.text
    form = browser.post(server.url + "/account/tokens", timeout=10,
                        data={"csrf_token": _csrf(page.text), "token_name": "during", "lifetime": "1d"})
    assert form.status_code == 503
    assert "Maintenance in progress" in form.text and "upgrade to 1.5.0" in form.text

    admin("maintenance", "leave")
    assert owner_api.post("/api/v2/templates", json={"name": "after"}).status_code == 201
    assert "Maintenance:" not in browser.get(server.url + "/account", timeout=10).text


def test_enter_waits_for_a_write_in_flight_which_then_commits(
        admin: Admin, owner_api: Api, shared_conninfo: str) -> None:
    member = owner_api.create_user()
    with psycopg.connect(shared_conninfo) as blocker:
        # Hold the member's row, so the suspend request below passes the maintenance check and then waits.
        blocker.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (member["id"],))
        with ThreadPoolExecutor(1) as pool:
            suspend = pool.submit(owner_api.put, f"/api/v2/users/{member['id']}/status/suspend")
            wait_until(lambda: _waiting_for_row(shared_conninfo), "the suspend request to reach the row lock",
                       interval=0.05)
            entering = subprocess.Popen([*COMMAND, "maintenance", "enter", "--reason", "backup"],
                                        env=admin_env(shared_conninfo), stdout=subprocess.PIPE, text=True)
            try:
                wait_until(lambda: _waiting_for_guard(shared_conninfo), "enter to wait for the request", interval=0.05)
                assert entering.poll() is None, "enter returned while a write was in flight"
                blocker.rollback()  # the request goes on and commits
                assert suspend.result(timeout=30).status_code == 200
                assert entering.wait(timeout=30) == 0
            finally:
                entering.kill()
    assert owner_api.get(f"/api/v2/users/{member['id']}").json()["status"] == "suspended"


def _waiting_for_row(conninfo: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype IN ('transactionid', 'tuple')"
                           ).fetchone()
    return bool(row and row[0])


def _waiting_for_guard(conninfo: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'advisory'"
                           " AND objid = %s", (GUARD_LOCK,)).fetchone()
    return bool(row and row[0])


@pytest.fixture
def daemon_server(fresh_db: str, site_pki: Path) -> Iterator[tuple[LiveServer, Api, str]]:
    """A server of its own with the external daemons' key set and a queued template import."""
    with live_server(fresh_db, pki_dir=site_pki, provisioner_psk=PSK) as live:
        api = Api(live.url)
        api.create_first_user("owner")
        owner = api.as_user(api.login("owner"))
        push(owner, MINIMAL, "starter")
        yield live, owner, fresh_db
        maintenance_off(fresh_db)


def _acquire(server: LiveServer, daemon: uuid.UUID) -> int:
    answer = Api(server.url).post("/api/v2/provisionerd/acquire", json={"daemon_id": str(daemon), "name": "ext"},
                                  headers={KEY_HEADER: PSK, DAEMON_HEADER: str(daemon)})
    return answer.status_code


def _job_states(conninfo: str) -> list[tuple[bool, bool]]:
    """(started, completed) of every job."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT started_at IS NOT NULL, completed_at IS NOT NULL FROM provisioner_jobs").fetchall()
    return [(bool(a), bool(b)) for a, b in rows]


def test_a_daemon_claims_nothing_during_maintenance(daemon_server: tuple[LiveServer, Api, str]) -> None:
    server, _, conninfo = daemon_server
    admin = admin_cli(conninfo)
    admin("maintenance", "enter", "--reason", "upgrade to 2.0.0")
    daemon = uuid.uuid4()
    assert _acquire(server, daemon) == 204
    assert _job_states(conninfo) == [(False, False)]
    admin("maintenance", "leave")
    assert _acquire(server, daemon) == 200
    assert _job_states(conninfo) == [(True, False)]


def test_enter_cancels_a_job_still_running_at_the_drain_timeout_and_names_it(
        daemon_server: tuple[LiveServer, Api, str]) -> None:
    server, _, conninfo = daemon_server
    assert _acquire(server, uuid.uuid4()) == 200  # a daemon claims the job and then never reports again
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT id FROM provisioner_jobs").fetchone()
    assert row is not None
    done = admin_cli(conninfo)("maintenance", "enter", "--reason", "upgrade", "--drain-timeout", "1")
    assert f"cancelled  template_version_import job {row[0]}" in done.stdout
    assert _job_states(conninfo) == [(True, True)]
    with psycopg.connect(conninfo) as conn:
        error = conn.execute("SELECT error FROM provisioner_jobs").fetchone()
    assert error is not None and "maintenance" in error[0]


def test_enter_waits_for_a_running_job_that_finishes_in_time(daemon_server: tuple[LiveServer, Api, str]) -> None:
    server, _, conninfo = daemon_server
    daemon = uuid.uuid4()
    assert _acquire(server, daemon) == 200
    entering = subprocess.Popen([*COMMAND, "maintenance", "enter", "--reason", "upgrade", "--drain-timeout", "60"],
                                env=admin_env(conninfo), stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _maintenance_on(conninfo), "maintenance to turn on", interval=0.05)
        assert entering.poll() is None, "enter returned while a job was running"
        job_id = _job_id(conninfo)
        # The daemon reports its job failed: an exempt write, so a running job can end during the drain.
        failed = Api(server.url).post(f"/api/v2/provisionerd/jobs/{job_id}/fail", json={"error": "stopped"},
                                      headers={KEY_HEADER: PSK, DAEMON_HEADER: str(daemon)})
        assert failed.status_code == 200, failed.text
        out, _ = entering.communicate(timeout=30)
    finally:
        entering.kill()
    assert entering.returncode == 0 and "cancelled" not in out


def _maintenance_on(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT active FROM maintenance").fetchone()
    return bool(row and row[0])


def _job_id(conninfo: str) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT id FROM provisioner_jobs").fetchone()
    assert row is not None
    return str(row[0])
