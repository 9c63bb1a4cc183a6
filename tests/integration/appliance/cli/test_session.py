"""The `appliance` CLI as a user types it, against a real server over HTTP."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.server import LiveServer


class Cli:
    def __init__(self, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        self.env["XDG_CONFIG_HOME"] = str(home)

    def __call__(self, *args: str, input: str | None = None, ok: bool = True,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "appliance", *args], input=input, capture_output=True,
                                text=True, timeout=60, env={**self.env, **(env or {})}, check=False)
        if ok:
            assert result.returncode == 0, f"appliance {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result


@pytest.fixture
def cli(tmp_path: Path, api: Api) -> Cli:
    return Cli(tmp_path)


def test_login_creates_the_first_user_and_stores_a_private_session(
        cli: Cli, server: LiveServer, tmp_path: Path) -> None:
    result = cli("login", server.url, "--username", "admin", "--first-user-email", "admin@example.org",
                 "--password", DEFAULT_PASSWORD)
    assert "Created owner admin" in result.stderr
    assert f"Logged in to {server.url} as admin" in result.stdout
    session = tmp_path / "appliance" / "session"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert json.loads(session.read_text())["url"] == server.url
    me = json.loads(cli("whoami", "--output", "json").stdout)
    assert me["username"] == "admin"
    assert [r["name"] for r in me["roles"]] == ["owner"]


def test_login_prompts_for_the_password(cli: Cli, owner_api: Api, server: LiveServer) -> None:
    result = cli("login", server.url, "--username", "owner", input=DEFAULT_PASSWORD + "\n")
    assert "Logged in" in result.stdout
    wrong = cli("login", server.url, "--username", "owner", input="not-it\n", ok=False)
    assert wrong.returncode == 1
    assert "Incorrect username/email or password. (HTTP 401)" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_users_create_list_suspend_and_roles(cli: Cli, owner_api: Api, server: LiveServer) -> None:
    cli("login", server.url, "--username", "owner", "--password", DEFAULT_PASSWORD)
    cli("users", "create", "bob", "--email", "bob@example.org", "--password", DEFAULT_PASSWORD)
    listed = cli("users", "list").stdout
    assert "bob" in listed and "bob@example.org" in listed
    cli("users", "suspend", "bob")
    suspended = json.loads(cli("users", "list", "--status", "suspended", "--output", "json").stdout)
    assert [u["username"] for u in suspended] == ["bob"]
    cli("users", "activate", "bob")
    roles = json.loads(cli("users", "roles", "bob", "auditor", "--output", "json").stdout)
    assert [r["name"] for r in roles["roles"]] == ["auditor"]
    duplicate = cli("users", "create", "bob", "--email", "b2@example.org", "--password", DEFAULT_PASSWORD, ok=False)
    assert "A user with username 'bob' already exists. (HTTP 409)" in duplicate.stderr


def test_tokens_create_list_revoke(cli: Cli, owner_api: Api, server: LiveServer) -> None:
    cli("login", server.url, "--username", "owner", "--password", DEFAULT_PASSWORD)
    created = cli("tokens", "create", "ci", "--lifetime", "7d")
    token = created.stdout.strip()
    assert "shown once" in created.stderr
    assert owner_api.get("/api/v2/users/me", token=token).status_code == 200
    listing = json.loads(cli("tokens", "list", "--output", "json").stdout)
    assert [t["token_name"] for t in listing] == ["ci"]
    cli("tokens", "revoke", listing[0]["id"])
    assert owner_api.get("/api/v2/users/me", token=token).status_code == 401


def test_a_metrics_token_from_the_cli_scrapes_and_opens_nothing_else(cli: Cli, owner_api: Api,
                                                                     server: LiveServer) -> None:
    cli("login", server.url, "--username", "owner", "--password", DEFAULT_PASSWORD)
    token = cli("tokens", "create", "prometheus", "--scope", "metrics").stdout.strip()
    assert owner_api.get("/api/v2/metrics", token=token).status_code == 200
    assert owner_api.get("/api/v2/users/me", token=token).status_code == 403
    listing = json.loads(cli("tokens", "list", "--output", "json").stdout)
    assert [(t["token_name"], t["scope"]) for t in listing] == [("prometheus", "metrics")]
    refused = cli("tokens", "create", "odd", "--scope", "everything", ok=False)
    assert "'everything' is not one of 'all', 'metrics'" in refused.stderr


def test_flags_and_environment_override_the_stored_session(cli: Cli, owner_api: Api, server: LiveServer) -> None:
    assert "not logged in" in cli("whoami", ok=False).stderr
    owner_api.create_user(username="carol")
    carol = owner_api.login("carol")
    by_env = cli("whoami", env={"APPLIANCE_URL": server.url, "APPLIANCE_SESSION_TOKEN": carol})
    assert "carol" in by_env.stdout
    cli("login", server.url, "--username", "owner", "--password", DEFAULT_PASSWORD)
    assert "owner" in cli("whoami").stdout
    assert "carol" in cli("whoami", "--token", carol).stdout


def test_audit_shows_what_the_cli_did(cli: Cli, owner_api: Api, server: LiveServer) -> None:
    cli("login", server.url, "--username", "owner", "--password", DEFAULT_PASSWORD)
    cli("tokens", "create", "audited")
    table = cli("audit", "--action", "create", "--resource-type", "api_key").stdout
    assert "audited" in table and "owner" in table
    lines = cli("audit", "--output", "jsonl").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert {"login", "create"} <= {r["action"] for r in rows}
    assert all(r["user_agent"].startswith("appliance-cli") for r in rows if r["action"] == "create"
               and r["resource_type"] == "api_key")


def test_logout_ends_the_server_session_and_forgets_it(cli: Cli, owner_api: Api, server: LiveServer,
                                                       tmp_path: Path) -> None:
    cli("login", server.url, "--username", "owner", "--password", DEFAULT_PASSWORD)
    token = json.loads((tmp_path / "appliance" / "session").read_text())["token"]
    cli("logout")
    assert not (tmp_path / "appliance" / "session").exists()
    assert owner_api.get("/api/v2/users/me", token=token).status_code == 401


def test_an_unreachable_server_is_a_clear_error(cli: Cli) -> None:
    result = cli("login", "http://127.0.0.1:9", "--username", "x", "--password", "y", ok=False)
    assert result.returncode == 1
    assert "Cannot reach http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_setup_link_prints_a_working_one_time_link(cli: Cli, server: LiveServer, shared_conninfo: str) -> None:
    from tests.support.postgres import conninfo_url

    env = {"APPLIANCE_POSTGRES_URL": conninfo_url(shared_conninfo), "APPLIANCE_ACCESS_URL": server.url}
    link = cli("setup-link", env=env).stdout.strip()
    assert link.startswith(f"{server.url}/setup?token=")
    token = link.split("token=", 1)[1]
    api = Api(server.url)
    created = api.post("/api/v2/users/first", json={"username": "admin", "email": "a@example.org",
                                                    "password": DEFAULT_PASSWORD, "setup_token": token})
    assert created.status_code == 201
    done = cli("setup-link", env=env, ok=False)
    assert done.returncode == 1 and "The first user already exists" in done.stderr
