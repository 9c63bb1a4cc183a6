"""Users through the real API over HTTP: first user, login, sessions, administration."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.api import DEFAULT_PASSWORD, Api


def test_first_user_becomes_owner_and_only_once(api: Api) -> None:
    assert api.get("/api/v2/users/first").status_code == 404
    owner = api.create_first_user("alice")
    assert [r["name"] for r in owner["roles"]] == ["owner"]
    assert api.get("/api/v2/users/first").status_code == 200
    again = api.post("/api/v2/users/first", json={
        "username": "mallory", "email": "m@example.org", "password": DEFAULT_PASSWORD})
    assert again.status_code == 409
    assert "already been created" in again.json()["message"]


def test_login_by_username_or_email_returns_a_working_token(api: Api) -> None:
    api.create_first_user("alice")
    for login in ("alice", "ALICE@example.org"):
        field = "email" if "@" in login else "username"
        response = api.post("/api/v2/users/login", json={field: login, "password": DEFAULT_PASSWORD})
        assert response.status_code == 201
        token = response.json()["session_token"]
        assert api.get("/api/v2/users/me", token=token).json()["username"] == "alice"


def test_login_sets_a_hardened_session_cookie(api: Api) -> None:
    api.create_first_user("alice")
    response = api.post("/api/v2/users/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("appliance_session_token=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain-HTTP quickstart; TLS deployments add Secure


def test_wrong_password_and_unknown_user_get_the_same_answer(api: Api) -> None:
    api.create_first_user("alice")
    wrong = api.post("/api/v2/users/login", json={"username": "alice", "password": "not-the-password"})
    unknown = api.post("/api/v2/users/login", json={"username": "nobody", "password": "not-the-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["message"] == unknown.json()["message"]


def test_logout_revokes_the_session_token(api: Api) -> None:
    api.create_first_user("alice")
    token = api.login("alice")
    assert api.post("/api/v2/users/logout", token=token).status_code == 200
    after = api.get("/api/v2/users/me", token=token)
    assert after.status_code == 401
    assert "revoked" in after.json()["message"]


def test_cookie_authenticated_changes_need_the_csrf_header(api: Api) -> None:
    api.create_first_user("alice")
    api.session.post(api.base + "/api/v2/users/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    assert api.session.get(api.base + "/api/v2/users/me").status_code == 200  # reads need no token
    refused = api.session.post(api.base + "/api/v2/users/me/keys/tokens", json={"token_name": "x"})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["message"]


def test_user_admin_creates_suspends_activates_and_deletes(owner_api: Api) -> None:
    admin = owner_api.as_user(_login_as(owner_api, ["user-admin"]))
    bob = admin.create_user(username="bob")
    bob_token = owner_api.login("bob")
    suspended = admin.put(f"/api/v2/users/{bob['id']}/status/suspend")
    assert suspended.json()["status"] == "suspended"
    assert owner_api.get("/api/v2/users/me", token=bob_token).status_code == 401
    login = owner_api.post("/api/v2/users/login", json={"username": "bob", "password": DEFAULT_PASSWORD})
    assert login.status_code == 401
    assert "suspended" in login.json()["message"]
    assert admin.put(f"/api/v2/users/{bob['id']}/status/activate").json()["status"] == "active"
    assert owner_api.login("bob")
    assert admin.delete("/api/v2/users/bob").status_code == 200
    assert admin.get("/api/v2/users/bob").status_code == 404
    assert owner_api.create_user(username="bob")["id"] != bob["id"]  # the name is free again


def test_user_admin_may_not_touch_owners_or_roles(owner_api: Api) -> None:
    admin = owner_api.as_user(_login_as(owner_api, ["user-admin"]))
    assert admin.put("/api/v2/users/owner/status/suspend").status_code == 403
    assert admin.delete("/api/v2/users/owner").status_code == 403
    target = admin.create_user()
    assert admin.put(f"/api/v2/users/{target['id']}/roles", json={"roles": ["auditor"]}).status_code == 403


def test_the_last_owner_cannot_be_removed(owner_api: Api) -> None:
    response = owner_api.put("/api/v2/users/owner/roles", json={"roles": []})
    assert response.status_code == 409
    assert "last active owner" in response.json()["message"]
    assert owner_api.delete("/api/v2/users/owner").status_code == 409  # own account
    second = owner_api.create_user(roles=["owner"], username="second")
    assert owner_api.put("/api/v2/users/owner/roles", json={"roles": []}).status_code == 200
    assert second["roles"][0]["name"] == "owner"


def test_members_only_ever_see_themselves(owner_api: Api) -> None:
    owner_api.create_user(username="carol")
    dave = owner_api.as_user(_login_as(owner_api, [], username="dave"))
    listing = dave.get("/api/v2/users").json()
    assert [u["username"] for u in listing["users"]] == ["dave"]
    assert dave.get("/api/v2/users/carol").status_code == 404


def test_user_search_and_status_filter(owner_api: Api) -> None:
    owner_api.create_user(username="searchme")
    other = owner_api.create_user(username="other")
    owner_api.put(f"/api/v2/users/{other['id']}/status/suspend")
    found = owner_api.get("/api/v2/users", params={"q": "searchme"}).json()
    assert [u["username"] for u in found["users"]] == ["searchme"]
    suspended = owner_api.get("/api/v2/users", params={"status": "suspended"}).json()
    assert [u["username"] for u in suspended["users"]] == ["other"]


def test_changing_a_password_ends_other_sessions(owner_api: Api) -> None:
    owner_api.create_user(username="erin")
    first, second = owner_api.login("erin"), owner_api.login("erin")
    changed = owner_api.put("/api/v2/users/me/password", token=first,
                            json={"old_password": DEFAULT_PASSWORD, "password": "new-horse-staple"})
    assert changed.status_code == 200
    assert owner_api.get("/api/v2/users/me", token=first).status_code == 200
    assert owner_api.get("/api/v2/users/me", token=second).status_code == 401
    assert owner_api.login("erin", "new-horse-staple")


def test_passwords_are_stored_as_argon2id_only(owner_api: Api, shared_conninfo: str) -> None:
    owner_api.create_user(username="frank")
    with psycopg.connect(shared_conninfo) as conn:
        row = conn.execute("SELECT hashed_password FROM users WHERE username = 'frank'").fetchone()
    assert row is not None and row[0].startswith("$argon2id$")
    assert DEFAULT_PASSWORD not in row[0]


@pytest.mark.parametrize(("body", "field"), [
    ({"username": "-bad-", "email": "x@example.org", "password": DEFAULT_PASSWORD}, "username"),
    ({"username": "okname", "email": "not-an-email", "password": DEFAULT_PASSWORD}, "email"),
    ({"username": "okname", "email": "x@example.org", "password": "short"}, "password"),
], ids=["username with leading hyphen", "email without domain", "password too short"])
def test_invalid_new_users_are_refused_naming_the_field(owner_api: Api, body: dict[str, str], field: str) -> None:
    response = owner_api.post("/api/v2/users", json=body)
    assert response.status_code == 400
    assert response.json()["validations"][0]["field"] == field


def _login_as(owner_api: Api, roles: list[str], username: str | None = None) -> str:
    user = owner_api.create_user(roles=roles, username=username)
    return owner_api.login(user["username"])


def test_an_installed_appliance_creates_the_first_user_only_with_the_setup_link(shared_conninfo: str) -> None:
    from appliance.auth.setup_tokens import create_setup_token
    from appliance.db.database import Database
    from tests.support.postgres import truncate_all
    from tests.support.server import live_server

    truncate_all(shared_conninfo)
    body = {"username": "admin", "email": "admin@example.org", "password": DEFAULT_PASSWORD}
    with live_server(shared_conninfo, first_user_requires_setup_token=True) as live:
        api = Api(live.url)
        missing = api.post("/api/v2/users/first", json=body)
        assert missing.status_code == 403 and "one-time setup link" in missing.json()["message"]
        db = Database(shared_conninfo)
        with db.transaction() as conn:
            old = create_setup_token(conn)
        with db.transaction() as conn:
            token = create_setup_token(conn)  # a newer link voids the older one
        db.close()
        stale = api.post("/api/v2/users/first", json={**body, "setup_token": old})
        assert stale.status_code == 403 and "invalid, used or expired" in stale.json()["message"]
        assert api.post("/api/v2/users/first", json={**body, "setup_token": token}).status_code == 201
        again = api.post("/api/v2/users/first", json={**body, "username": "second", "setup_token": token})
        assert again.status_code == 409
