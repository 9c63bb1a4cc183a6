"""Build logs keep no secret (finding 2): a template that prints the provisioner key, the database password and
its agent's token leaves `[REDACTED]` in the stored log, whichever daemon ran it (in the server, or external and
told none of those), and only the workspace's owner and admins read that log at all."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg.conninfo import conninfo_to_dict

from appliance.provisioner.local import start_in_process
from appliance.sdk.redaction import REDACTED
from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.postgres import create_database, drop_database
from tests.support.server import LiveServer, live_server
from tests.support.workspaces import MINIMAL, build_logs, push, wait_build, wait_version

pytestmark = pytest.mark.integration
PSK = secrets.token_urlsafe(32)
DB_NAME = "log_redaction"


def _template(db_password: str) -> str:
    """Prints the secrets as a hostile template would once it got hold of them (the sandbox is item 1's)."""
    return f"""
terraform {{
  required_providers {{
    appliance = {{ source = "appliance.internal/appliance/appliance" }}
  }}
}}
data "appliance_workspace" "me" {{}}
resource "appliance_agent" "main" {{
  count = data.appliance_workspace.me.start_count
  os    = "linux"
  arch  = "amd64"
}}
locals {{
  token = nonsensitive(appliance_agent.main[0].token)
}}
resource "terraform_data" "leak" {{
  count      = data.appliance_workspace.me.start_count
  depends_on = [appliance_agent.main]
  provisioner "local-exec" {{
    command = "echo leak-psk={PSK}; echo leak-db={db_password}; echo leak-token=${{local.token}}"
  }}
}}
"""


@pytest.fixture(scope="module")
def conninfo(admin_conninfo: str, template_db: str) -> Iterator[str]:
    yield create_database(admin_conninfo, DB_NAME, template=template_db)
    drop_database(admin_conninfo, DB_NAME)


@pytest.fixture(scope="module")
def db_password(conninfo: str) -> str:
    password = str(conninfo_to_dict(conninfo).get("password") or "")
    assert len(password) >= 8, "the test cluster connects with a password, which the logs must hide"
    return password


@pytest.fixture(scope="module")
def server(conninfo: str, appliance_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No daemon of its own: each test runs its build on the daemon it names."""
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH; these tests run the real terraform CLI")
    work = tmp_path_factory.mktemp("log-redaction")
    with live_server(conninfo, mirror_dir=appliance_mirror, data_dir=work, provisioner_dir=work / "provisioner",
                     provisioner_psk=PSK, provisioner_heartbeat_timeout=timedelta(seconds=10)) as live:
        api = Api(live.url)
        api.create_first_user("owner")
        owner = api.as_user(api.login("owner"))
        owner.create_user([], username="alice")
        owner.create_user([], username="mallory")
        owner.create_user(["template-admin"], username="templateadmin")
        yield live


@contextmanager
def _daemon(kind: str, live: LiveServer, work: Path, mirror: Path) -> Iterator[None]:
    if kind == "in-process":
        running = start_in_process(live.config, live.db, count=1)
        try:
            yield
        finally:
            running.stop()
        return
    (work / "psk").write_text(PSK)
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "provisionerd", "start", "--url", live.url, "--psk-file",
         str(work / "psk"), "--work-dir", str(work / "work"), "--mirror", str(mirror), "--heartbeat", "1",
         "--name", "external"], env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)


def _token(owner: Api, build_id: str) -> str:
    state = owner.get(f"/api/v2/workspacebuilds/{build_id}/state").json()
    agent = next(r for r in state["resources"] if r["type"] == "appliance_agent")
    token: str = agent["instances"][0]["attributes"]["token"]
    return token


def _as(live: LiveServer, username: str) -> Api:
    return Api(live.url).as_user(Api(live.url).login(username, DEFAULT_PASSWORD))


def _console(live: LiveServer, api: Api, path: str) -> requests.Response:
    return requests.get(live.url + path, cookies={"appliance_session_token": api.token or ""}, timeout=30)


@pytest.mark.security(finding=2)
@pytest.mark.parametrize("kind", ["in-process", "external"], ids=["an in-process daemon", "an external daemon"])
def test_a_build_log_never_shows_the_psk_the_database_password_or_the_agent_token(
        server: LiveServer, conninfo: str, db_password: str, appliance_mirror: Path, tmp_path: Path,
        kind: str) -> None:
    owner = _as(server, "owner")
    alice = _as(server, "alice")
    source = tmp_path / "template"
    source.mkdir()
    (source / "main.tf").write_text(_template(db_password))
    name = f"leaky-{kind}"
    with _daemon(kind, server, tmp_path, appliance_mirror):
        version = wait_version(owner, name, push(owner, source, name)["id"])
        assert version["job"]["status"] == "succeeded", version["job"]["error"]
        created = alice.post("/api/v2/workspaces", json={"template": name, "name": f"dev-{kind}", "parameters": {}})
        assert created.status_code == 201, created.text
        build = wait_build(alice, created.json()["latest_build"]["id"])
    assert build["status"] == "running", build_logs(alice, build["id"])
    planted = {"PSK": PSK, "database password": db_password, "agent token": _token(owner, build["id"])}

    path = f"/api/v2/workspacebuilds/{build['id']}/logs"
    seen = {"API": build_logs(alice, build["id"]),
            "follow": alice.get(path, params={"follow": "true"}).text,
            "console": _console(server, alice, f"/workspaces/{created.json()['id']}").text}
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT l.output FROM provisioner_job_logs l JOIN workspace_builds b ON b.job_id = l.job_id"
                            " WHERE b.id = %s", (build["id"],)).fetchall()
    seen["database"] = "\n".join(row[0] for row in rows)
    for way, text in seen.items():
        assert f"leak-psk={REDACTED}" in text and f"leak-token={REDACTED}" in text, (way, text)
        for what, value in planted.items():
            assert value not in text, f"the {what} shows in the build log read through the {way}"


def test_another_member_cannot_read_a_build_log_over_the_api_the_follow_the_console_or_the_cli(
        server: LiveServer, appliance_mirror: Path, tmp_path: Path) -> None:
    owner, alice, mallory = (_as(server, name) for name in ("owner", "alice", "mallory"))
    with _daemon("in-process", server, tmp_path, appliance_mirror):
        version = wait_version(owner, "minimal", push(owner, MINIMAL, "minimal")["id"])
        assert version["job"]["status"] == "succeeded", version["job"]["error"]
        created = alice.post("/api/v2/workspaces", json={"template": "minimal", "name": "private", "parameters": {}})
        assert created.status_code == 201, created.text
        build = wait_build(alice, created.json()["latest_build"]["id"])
    path = f"/api/v2/workspacebuilds/{build['id']}/logs"
    for answer in (mallory.get(path), mallory.get(path, params={"follow": "true"})):
        assert answer.status_code == 404, answer.text
        assert answer.json()["message"] == f"Build {build['id']} does not exist.", "as if there were no such build"
    assert _console(server, mallory, f"/workspaces/{created.json()['id']}").status_code == 404
    cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
               "XDG_CONFIG_HOME": str(tmp_path / "mallory")}
    appliance = [sys.executable, "-m", "appliance"]
    subprocess.run([*appliance, "login", server.url, "--username", "mallory", "--password", DEFAULT_PASSWORD],
                   env=cli_env, check=True, capture_output=True, timeout=120)
    shown = subprocess.run([*appliance, "builds", "logs", build["id"]], env=cli_env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert shown.returncode != 0 and "Initializing" not in shown.stdout, shown.stdout
    assert "does not exist" in shown.stderr, shown.stderr
    for admin in (owner, _as(server, "templateadmin")):
        assert admin.get(path).status_code == 200, "the site's admins read every build log"
