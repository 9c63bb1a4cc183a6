"""Templates, workspaces and the provisioner: real terraform, real Postgres, the real appliance provider
installed from a real mirror, daemons in-process and as separate processes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from appliance.provisioner.local import start_in_process
from tests.support.api import Api
from tests.support.postgres import create_database, drop_database
from tests.support.server import LiveServer, live_server
from tests.support.workspaces import (
    MINIMAL,
    TEMPLATES,
    build_logs,
    push,
    transition,
    wait_build,
    wait_for_log,
    wait_version,
)

pytestmark = pytest.mark.integration
PSK = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def ws_db(admin_conninfo: str, template_db: str) -> Iterator[str]:
    yield create_database(admin_conninfo, "workspaces_module", template=template_db)
    drop_database(admin_conninfo, "workspaces_module")


@pytest.fixture(scope="module")
def ws_server(ws_db: str, appliance_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No in-process daemon: each test starts the daemons it needs, so queued jobs stay queued until then."""
    with live_server(ws_db, mirror_dir=appliance_mirror, provisioner_dir=tmp_path_factory.mktemp("provisioner"),
                     provisioner_psk=PSK, provisioner_heartbeat_timeout=timedelta(seconds=4)) as live:
        yield live


@pytest.fixture
def owner(ws_server: LiveServer, ws_db: str) -> Api:
    with psycopg.connect(ws_db, autocommit=True) as conn:
        conn.execute("TRUNCATE users, files, templates, template_versions, provisioner_jobs, provisioner_daemons,"
                     " workspaces, workspace_builds RESTART IDENTITY CASCADE")
    api = Api(ws_server.url)
    api.create_first_user("owner")
    return api.as_user(api.login("owner"))


@pytest.fixture
def daemons(ws_server: LiveServer) -> Iterator[None]:
    """One in-process daemon for the duration of a test."""
    running = start_in_process(ws_server.config, ws_server.db, count=1)
    yield
    running.stop()


def _state(api: Api, build_id: str) -> dict:
    response = api.get(f"/api/v2/workspacebuilds/{build_id}/state")
    assert response.status_code == 200, response.text
    return response.json()


def _types(resources: list[dict]) -> set[str]:
    return {r["address"] for r in resources}


def test_full_lifecycle_push_import_create_stop_start_update_delete(owner: Api, daemons: None, ws_db: str) -> None:
    version = wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    assert version["job"]["status"] == "succeeded", version["job"]["error"]
    assert version["active"]
    params = {p["name"]: p for p in version["parameters"]}
    assert set(params) == {"greeting", "cpus"}
    assert params["cpus"]["type"] == "number" and params["cpus"]["validation"]["max"] == 8
    assert [a["name"] for a in version["agents"]] == ["main"]
    assert [app["slug"] for app in version["agents"][0]["apps"]] == ["shell"]

    created = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev",
                                                     "parameters": {"cpus": "3"}})
    assert created.status_code == 201, created.text
    workspace = created.json()
    build = wait_build(owner, workspace["latest_build"]["id"])
    assert build["status"] == "running", build_logs(owner, build["id"])
    assert _types(build["resources"]) == {"terraform_data.home", "appliance_agent.main[0]"}
    home = next(r for r in build["resources"] if r["type"] == "terraform_data")
    assert home["daily_cost"] == 3
    assert {"key": "cpus", "value": "3", "sensitive": False} in home["metadata"]
    agent_resource = next(r for r in build["resources"] if r["type"] == "appliance_agent")
    assert [a["apps"][0]["slug"] for a in agent_resource["agents"]] == ["shell"]

    # The agent token: in the state, stored only as a hash, never in the logs.
    token = next(r for r in _state(owner, build["id"])["resources"]
                 if r["type"] == "appliance_agent")["instances"][0]["attributes"]["token"]
    with psycopg.connect(ws_db) as conn:
        hashes = [bytes(r[0]) for r in conn.execute("SELECT hashed_token FROM workspace_agents").fetchall()]
    assert hashes == [hashlib.sha256(token.encode()).digest()]
    assert token not in build_logs(owner, build["id"])
    assert "[Applying]" in build_logs(owner, build["id"])

    stopped = transition(owner, workspace["id"], "stop")
    assert stopped["status"] == "stopped", build_logs(owner, stopped["id"])
    assert _types(stopped["resources"]) == {"terraform_data.home"}, "stop keeps only the persistent resource"
    home_id = next(r for r in _state(owner, build["id"])["resources"] if r["type"] == "terraform_data")
    kept = next(r for r in _state(owner, stopped["id"])["resources"] if r["type"] == "terraform_data")
    assert kept["instances"][0]["attributes"]["id"] == home_id["instances"][0]["attributes"]["id"]

    started = transition(owner, workspace["id"], "start")
    assert started["status"] == "running"
    assert "appliance_agent.main[0]" in _types(started["resources"])

    v2 = wait_version(owner, "minimal", push(owner, TEMPLATES / "slow", "minimal")["id"])
    assert v2["job"]["status"] == "succeeded" and v2["active"]
    assert owner.get(f"/api/v2/workspaces/{workspace['id']}").json()["outdated"] is True
    update = owner.post(f"/api/v2/workspaces/{workspace['id']}/update", json={})
    assert update.status_code == 201, update.text
    updated = wait_build(owner, update.json()["id"])
    assert updated["status"] == "running", build_logs(owner, updated["id"])
    after = owner.get(f"/api/v2/workspaces/{workspace['id']}").json()
    assert after["outdated"] is False and after["template_version_name"] == "v2"
    assert after["parameters"] == {"delay": "0"}, "parameters follow the new version"

    deleted = transition(owner, workspace["id"], "delete")
    assert deleted["status"] == "deleted", build_logs(owner, deleted["id"])
    assert deleted["resources"] == []
    assert owner.get(f"/api/v2/workspaces/{workspace['id']}").status_code == 404
    assert owner.get("/api/v2/workspaces").json()["workspaces"] == []


def test_parameters_are_checked_before_anything_is_queued(owner: Api, daemons: None) -> None:
    wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    cases = [({"cpus": "9"}, "parameters.cpus", "between 1 and 8"),
             ({"cpus": "two"}, "parameters.cpus", "not a number"),
             ({"greeting": "HELLO"}, "parameters.greeting", "lowercase"), ({"gpu": "1"}, "parameters.gpu", "Unknown")]
    for values, field, words in cases:
        response = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "p", "parameters": values})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["validations"][0]["field"] == field if "validations" in body else body.get("field") == field
        assert words.lower() in (body["message"] + body.get("detail", "")).lower(), body
    assert owner.get("/api/v2/workspaces").json()["workspaces"] == [], "a refused create leaves nothing behind"
    bad_name = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "Not_DNS", "parameters": {}})
    assert bad_name.status_code == 400 and "name" in bad_name.text


def test_immutable_parameter_cannot_change_and_names_are_unique(owner: Api, daemons: None) -> None:
    wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    workspace = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev", "parameters": {}}).json()
    wait_build(owner, workspace["latest_build"]["id"])
    again = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev", "parameters": {}})
    assert again.status_code == 409
    changed = owner.post(f"/api/v2/workspaces/{workspace['id']}/builds",
                         json={"transition": "start", "parameters": {"cpus": "4"}})
    assert changed.status_code == 400 and "immutable" in changed.json()["message"]
    mutable = transition(owner, workspace["id"], "start", parameters={"greeting": "good morning"})
    assert mutable["status"] == "running"
    assert owner.get(f"/api/v2/workspaces/{workspace['id']}").json()["parameters"]["greeting"] == "good morning"


def test_second_build_while_one_is_unfinished_is_409_and_cancel_frees_it(owner: Api, ws_server: LiveServer) -> None:
    running = start_in_process(ws_server.config, ws_server.db, count=1)
    wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    running.stop()  # no daemon now: the next build stays queued
    workspace = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev", "parameters": {}}).json()
    assert workspace["status"] == "pending"
    conflict = owner.post(f"/api/v2/workspaces/{workspace['id']}/builds", json={"transition": "stop"})
    assert conflict.status_code == 409 and "not finished" in conflict.json()["message"]
    canceled = owner.post(f"/api/v2/workspacebuilds/{workspace['latest_build']['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert owner.get(f"/api/v2/workspaces/{workspace['id']}").json()["status"] == "canceled"
    running = start_in_process(ws_server.config, ws_server.db, count=1)
    try:
        assert transition(owner, workspace["id"], "start")["status"] == "running"
    finally:
        running.stop()


def test_failed_import_keeps_the_active_version(owner: Api, daemons: None) -> None:
    good = wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    broken = wait_version(owner, "minimal", push(owner, TEMPLATES / "broken", "minimal")["id"])
    assert broken["job"]["status"] == "failed"
    assert "main.tf" in broken["job"]["error"] or "Invalid" in broken["job"]["error"], broken["job"]["error"]
    template = owner.get("/api/v2/templates/minimal").json()
    assert template["active_version_id"] == good["id"]
    promote = owner.post(f"/api/v2/templates/minimal/versions/{broken['name']}/promote")
    assert promote.status_code == 409
    logs = owner.get(f"/api/v2/templateversions/{broken['id']}/logs").json()["logs"]
    assert any(line["stage"] == "Failed" for line in logs)

    missing = wait_version(owner, "minimal", push(owner, TEMPLATES / "missing-provider", "minimal")["id"])
    assert missing["job"]["status"] == "failed"
    assert "not in the appliance's mirror" in missing["job"]["error"], missing["job"]["error"]
    assert owner.get("/api/v2/templates/minimal").json()["active_version_id"] == good["id"]


def test_template_with_workspaces_cannot_be_deleted(owner: Api, daemons: None) -> None:
    wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    workspace = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev", "parameters": {}}).json()
    wait_build(owner, workspace["latest_build"]["id"])
    refused = owner.delete("/api/v2/templates/minimal")
    assert refused.status_code == 409 and "1 workspace" in refused.json()["message"]
    assert owner.get("/api/v2/templates/minimal").status_code == 200
    transition(owner, workspace["id"], "delete")
    assert owner.delete("/api/v2/templates/minimal").status_code == 200


def test_template_acl_limits_who_creates_workspaces(owner: Api, daemons: None) -> None:
    wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    assert owner.request("PATCH", "/api/v2/templates/minimal", json={"allowed_roles": ["auditor"]}).status_code == 200
    member = owner.create_user()
    member_api = owner.as_user(owner.login(member["username"]))
    refused = member_api.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev", "parameters": {}})
    assert refused.status_code == 403 and "auditor" in refused.json()["detail"]
    assert member_api.post("/api/v2/files", data=b"x", headers={"Content-Type": "application/x-tar"}).status_code == 403


def test_two_daemons_run_ten_queued_jobs_exactly_once(owner: Api, ws_server: LiveServer, ws_db: str) -> None:
    first = start_in_process(ws_server.config, ws_server.db, count=1)
    wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    first.stop()
    builds = []
    for index in range(10):
        created = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": f"w{index}", "parameters": {}})
        builds.append(created.json()["latest_build"]["id"])
    running = start_in_process(ws_server.config, ws_server.db, count=2)
    try:
        results = [wait_build(owner, b, timeout=300) for b in builds]
    finally:
        running.stop()
    assert [r["status"] for r in results] == ["running"] * 10
    with psycopg.connect(ws_db) as conn:
        applies = conn.execute(
            "SELECT b.id, count(l.id) FROM workspace_builds b JOIN provisioner_job_logs l ON l.job_id = b.job_id"
            " WHERE l.output LIKE '$ terraform apply%%' GROUP BY b.id").fetchall()
        workers = conn.execute("SELECT count(DISTINCT worker_id) FROM provisioner_jobs j JOIN workspace_builds b"
                               " ON b.job_id = j.id").fetchone()
    assert sorted(count for _, count in applies) == [1] * 10, "every job applied exactly once"
    assert workers is not None and workers[0] == 2, "both daemons took jobs"


def _external_daemon(url: str, tmp: Path, mirror: Path) -> subprocess.Popen[bytes]:
    key = tmp / "psk"
    key.write_text(PSK)
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", "provisionerd", "start", "--url", url, "--psk-file", str(key),
         "--work-dir", str(tmp / "work"), "--mirror", str(mirror), "--heartbeat", "1", "--name", "external"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_daemon_fails_the_job_keeps_state_and_the_next_start_succeeds(
        owner: Api, ws_server: LiveServer, appliance_mirror: Path, tmp_path: Path) -> None:
    daemon = _external_daemon(ws_server.url, tmp_path, appliance_mirror)
    try:
        imported = wait_version(owner, "slow", push(owner, TEMPLATES / "slow", "slow")["id"])
        assert imported["job"]["status"] == "succeeded", imported["job"]["error"]
        workspace = owner.post("/api/v2/workspaces", json={"template": "slow", "name": "dev",
                                                           "parameters": {"delay": "60"}}).json()
        build_id = workspace["latest_build"]["id"]
        wait_for_log(owner, build_id, "holding for 60s")
        time.sleep(1.5)  # one state upload round after the agent was created
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    failed = wait_build(owner, build_id, timeout=60)
    assert failed["status"] == "failed"
    assert "stopped responding" in failed["job"]["error"]
    kept = [r["type"] for r in _state(owner, build_id)["resources"]]
    assert "appliance_agent" in kept, "the state terraform wrote before the kill was kept"

    replacement = _external_daemon(ws_server.url, tmp_path, appliance_mirror)
    try:
        retried = transition(owner, workspace["id"], "start", parameters={"delay": "0"})
    finally:
        replacement.send_signal(signal.SIGTERM)
        replacement.wait(30)
    assert retried["status"] == "running", build_logs(owner, retried["id"])
    assert "terraform_data.slow" not in json.dumps(retried["resources"])


def test_external_daemon_with_a_wrong_key_is_refused(ws_server: LiveServer, tmp_path: Path) -> None:
    key = tmp_path / "psk"
    key.write_text("x" * 40)
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "provisionerd", "start", "--url", ws_server.url, "--psk-file", str(key),
         "--work-dir", str(tmp_path / "work")], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "refused this daemon" in result.stderr and "x" * 40 not in result.stderr


def test_canceling_a_running_build_interrupts_terraform(owner: Api, daemons: None) -> None:
    wait_version(owner, "slow", push(owner, TEMPLATES / "slow", "slow")["id"])
    workspace = owner.post("/api/v2/workspaces", json={"template": "slow", "name": "dev",
                                                       "parameters": {"delay": "120"}}).json()
    build_id = workspace["latest_build"]["id"]
    wait_for_log(owner, build_id, "holding for 120s")
    started = time.monotonic()
    canceling = owner.post(f"/api/v2/workspacebuilds/{build_id}/cancel")
    assert canceling.status_code == 200 and canceling.json()["status"] == "canceling"
    canceled = wait_build(owner, build_id, timeout=90)
    assert canceled["status"] == "canceled"
    assert time.monotonic() - started < 60, "terraform was interrupted, not waited out"
    assert "Interrupting terraform: the build was canceled" in build_logs(owner, build_id)
    assert owner.post(f"/api/v2/workspacebuilds/{build_id}/cancel").status_code == 409


def test_build_logs_follow_as_server_sent_events_until_the_build_ends(owner: Api, daemons: None) -> None:
    wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    workspace = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev", "parameters": {}}).json()
    build_id = workspace["latest_build"]["id"]
    events: list[tuple[str, dict]] = []
    with owner.get(f"/api/v2/workspacebuilds/{build_id}/logs?follow=true", stream=True) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    assert events[-1] == ("end", {"status": "succeeded", "error": ""})
    stages = [data["stage"] for kind, data in events if kind == "log"]
    assert stages.index("Initializing") < stages.index("Planning") < stages.index("Applying")
    last_id = max(data["id"] for kind, data in events if kind == "log")
    resumed = owner.get(f"/api/v2/workspacebuilds/{build_id}/logs?follow=true",
                        headers={"Last-Event-ID": str(last_id)}).text
    assert "event: log" not in resumed and "event: end" in resumed, "a reconnect resumes after the last event"


def test_a_build_that_outruns_its_timeout_is_interrupted_and_failed(
        owner: Api, ws_db: str, appliance_mirror: Path, tmp_path: Path) -> None:
    with live_server(ws_db, mirror_dir=appliance_mirror, provisioner_dir=tmp_path,
                     provisioner_job_timeout=timedelta(seconds=8), provisioner_daemons=1,
                     provisioner_heartbeat_timeout=timedelta(seconds=4)) as short:
        api = Api(short.url, owner.token)
        wait_version(api, "slow", push(api, TEMPLATES / "slow", "slow")["id"])
        workspace = api.post("/api/v2/workspaces", json={"template": "slow", "name": "dev",
                                                         "parameters": {"delay": "300"}}).json()
        failed = wait_build(api, workspace["latest_build"]["id"], timeout=120)
    assert failed["status"] == "failed"
    assert "ran longer than its timeout of 8s" in failed["job"]["error"]
    assert "Interrupting terraform" in build_logs(owner, failed["id"])


def test_an_upload_with_a_link_or_no_terraform_is_refused(owner: Api) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        main = tarfile.TarInfo("main.tf")
        tar.addfile(main, io.BytesIO(b""))
        link = tarfile.TarInfo("secrets.tf")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/appliance/appliance.toml"
        tar.addfile(link)
    refused = owner.post("/api/v2/files", data=buffer.getvalue(), headers={"Content-Type": "application/x-tar"})
    assert refused.status_code == 400 and "'secrets.tf' is not a regular file" in refused.json()["message"]
    garbage = owner.post("/api/v2/files", data=b"not a tar", headers={"Content-Type": "application/x-tar"})
    assert garbage.status_code == 400 and "not a tar archive" in garbage.json()["message"]
    as_json = owner.post("/api/v2/files", json={"a": 1})
    assert as_json.status_code == 400 and "application/x-tar" in as_json.json()["message"]


def test_an_archived_version_cannot_be_chosen_for_a_build(owner: Api, daemons: None) -> None:
    v1 = wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
    workspace = owner.post("/api/v2/workspaces", json={"template": "minimal", "name": "dev", "parameters": {}}).json()
    wait_build(owner, workspace["latest_build"]["id"])
    wait_version(owner, "minimal", push(owner, TEMPLATES / "slow", "minimal")["id"])
    assert owner.post("/api/v2/templates/minimal/versions/v1/archive").json()["archived"] is True
    chosen = owner.post(f"/api/v2/workspaces/{workspace['id']}/builds",
                        json={"transition": "start", "template_version_id": v1["id"]})
    assert chosen.status_code == 409 and "archived" in chosen.json()["message"]
    assert transition(owner, workspace["id"], "stop")["status"] == "stopped", "a workspace on it keeps working"
    refused = owner.post("/api/v2/templates/minimal/versions/v2/archive")
    assert refused.status_code == 409 and "active version" in refused.json()["message"]
