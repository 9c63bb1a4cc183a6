"""The workspace owner's SSH key (Coder's gitsshkey): the API, the console's account page, the audit
row of a regeneration, and the key a build's templates see as the owner's ssh_public_key."""

from __future__ import annotations

import re
from datetime import timedelta
from uuid import uuid4

import asyncssh
import psycopg
import pytest
import requests

from appliance.provisioner import coordinator, jobs
from tests.support.agents import seed_template
from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.server import LiveServer

pytestmark = pytest.mark.integration

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEY_ON_PAGE = re.compile(r'id="git-ssh-public-key">(ssh-ed25519 [^<]+)<')


@pytest.fixture
def member(owner_api: Api) -> Api:
    owner_api.create_user(username="dev")
    return owner_api.as_user(owner_api.login("dev"))


def _key(api: Api, user: str = "me") -> str:
    answer = api.get(f"/api/v2/users/{user}/gitsshkey")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["public_key"])


def test_a_user_gets_one_ed25519_key_made_on_first_use_and_regenerating_replaces_and_audits_it(
        member: Api, owner_api: Api, shared_conninfo: str) -> None:
    first = _key(member)
    assert asyncssh.import_public_key(first).algorithm == b"ssh-ed25519"
    assert _key(member) == first
    regenerated = member.put("/api/v2/users/me/gitsshkey")
    assert regenerated.status_code == 200, regenerated.text
    second = regenerated.json()["public_key"]
    assert second != first and _key(member) == second
    assert "private" not in regenerated.text.lower()
    with psycopg.connect(shared_conninfo) as conn:
        row = conn.execute("SELECT action, resource_target, diff FROM audit_logs WHERE resource_type = 'user_ssh_key'"
                           ).fetchone()
    assert row is not None and row[0] == "write" and row[1] == "dev"
    assert row[2]["public_key"]["old"] == first and row[2]["public_key"]["new"] == second


def test_another_member_cannot_read_or_regenerate_someone_elses_key(member: Api, owner_api: Api) -> None:
    owner_api.create_user(username="other")
    other = owner_api.as_user(owner_api.login("other"))
    dev_id = member.get("/api/v2/users/me").json()["id"]
    assert other.get(f"/api/v2/users/{dev_id}/gitsshkey").status_code == 404
    assert other.put(f"/api/v2/users/{dev_id}/gitsshkey").status_code == 404
    assert _key(owner_api, dev_id) == _key(member)  # an owner manages the account


def _browser(server: LiveServer, username: str) -> requests.Session:
    session = requests.Session()
    token = _CSRF.search(session.get(server.url + "/login", timeout=10).text)
    assert token is not None
    session.post(server.url + "/login", timeout=10, data={"csrf_token": token.group(1), "login": username,
                                                          "password": DEFAULT_PASSWORD, "next": ""})
    return session


def test_the_account_page_shows_the_key_and_regenerates_it_with_a_csrf_token_only(
        server: LiveServer, member: Api) -> None:
    browser = _browser(server, "dev")
    page = browser.get(server.url + "/account", timeout=10)
    shown = _KEY_ON_PAGE.search(page.text)
    assert shown is not None and shown.group(1) == _key(member)
    forged = browser.post(server.url + "/account/gitsshkey/regenerate", timeout=10, data={})
    assert forged.status_code == 400
    assert _key(member) == shown.group(1)
    csrf = _CSRF.search(page.text)
    assert csrf is not None
    after = browser.post(server.url + "/account/gitsshkey/regenerate", timeout=10,
                         data={"csrf_token": csrf.group(1)})
    assert after.status_code == 200 and after.history, after.text[:300]
    new = _KEY_ON_PAGE.search(after.text)
    assert new is not None and new.group(1) != shown.group(1) and new.group(1) == _key(member)
    assert "A new SSH key was made" in after.text


def test_a_build_passes_the_owners_public_key_to_terraform(server: LiveServer, member: Api,
                                                            shared_conninfo: str) -> None:
    seed_template(shared_conninfo)
    created = member.post("/api/v2/workspaces", json={"template": "agents", "name": "box"})
    assert created.status_code == 201, created.text
    daemon = uuid4()
    with server.db.transaction() as conn:
        jobs.register_daemon(conn, daemon, "test", dict(jobs.SITE_TAGS), "test")
        spec = coordinator.acquire(conn, daemon, dict(jobs.SITE_TAGS), coordinator.JobSite("http://x", "reg:5000"),
                                   timedelta(minutes=1))
    assert spec is not None
    assert spec.env["APPLIANCE_WORKSPACE_OWNER_SSH_PUBLIC_KEY"] == _key(member)
