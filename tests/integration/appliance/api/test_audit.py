"""The audit log: every mutation leaves a row with actor, diff, source; searchable and exportable."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import DEFAULT_PASSWORD, Api


def _latest(api: Api, **filters: str) -> dict[str, Any]:
    rows = api.get("/api/v2/audit", params={"limit": 1, **filters}).json()["audit_logs"]
    assert rows, f"no audit row for {filters}"
    row: dict[str, Any] = rows[0]
    return row


def _create_user(api: Api) -> None:
    api.create_user(username="target")


def _suspend(api: Api) -> None:
    user = api.create_user(username="target")
    api.put(f"/api/v2/users/{user['id']}/status/suspend")


def _roles(api: Api) -> None:
    user = api.create_user(username="target")
    api.put(f"/api/v2/users/{user['id']}/roles", json={"roles": ["auditor"]})


def _delete(api: Api) -> None:
    api.create_user(username="target")
    api.delete("/api/v2/users/target")


def _password(api: Api) -> None:
    api.create_user(username="target")
    api.put("/api/v2/users/target/password", json={"password": "a-brand-new-one"})


def _token(api: Api) -> None:
    api.post("/api/v2/users/me/keys/tokens", json={"token_name": "target"})


def _revoke(api: Api) -> None:
    token = api.post("/api/v2/users/me/keys/tokens", json={"token_name": "target"}).json()
    api.delete(f"/api/v2/users/me/keys/{token['token']['id']}")


def _logout(api: Api) -> None:
    api.post("/api/v2/users/logout")


# (what the owner does, expected action, resource type, target, diff field expected)
MUTATIONS: list[tuple[Callable[[Api], None], str, str, str, str | None]] = [
    (_create_user, "create", "user", "target", "username"),
    (_suspend, "write", "user", "target", "status"),
    (_roles, "write", "user", "target", "roles"),
    (_delete, "delete", "user", "target", "username"),
    (_password, "write", "user", "target", "hashed_password"),
    (_token, "create", "api_key", "target", "token_name"),
    (_revoke, "delete", "api_key", "target", None),
    (_logout, "logout", "api_key", "owner", None),
]


@pytest.mark.parametrize(("act", "action", "resource_type", "target", "field"), MUTATIONS,
                         ids=[m[0].__name__.strip("_") for m in MUTATIONS])
def test_every_mutation_writes_an_audit_row(owner_api: Api, act: Callable[[Api], None], action: str,
                                            resource_type: str, target: str, field: str | None) -> None:
    act(owner_api)
    reader = owner_api.as_user(owner_api.login("owner"))
    row = _latest(reader, action=action, resource_type=resource_type)
    assert (row["username"], row["resource_target"]) == ("owner", target)
    assert row["ip"] == "127.0.0.1"
    assert row["user_agent"].startswith("python-requests")
    if field:
        assert field in row["diff"]


def test_secret_values_never_appear_in_the_audit_log(owner_api: Api) -> None:
    _password(owner_api)
    token = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "x"}).json()["key"]
    export = owner_api.get("/api/v2/audit/export").text
    assert "a-brand-new-one" not in export
    assert DEFAULT_PASSWORD not in export
    assert token.split("-")[1] not in export
    assert "$argon2" not in export
    row = _latest(owner_api, action="write", resource_type="user")
    assert row["diff"]["hashed_password"] == {"old": "", "new": "", "secret": True}


def test_failed_logins_are_audited_with_their_status(api: Api) -> None:
    api.create_first_user("alice")
    api.post("/api/v2/users/login", json={"username": "alice", "password": "wrong-password"})
    api.post("/api/v2/users/login", json={"username": "ghost", "password": "wrong-password"})
    owner = api.as_user(api.login("alice"))
    rows = owner.get("/api/v2/audit", params={"action": "login"}).json()["audit_logs"]
    assert [(r["username"], r["status_code"]) for r in rows] == [
        ("alice", 201), ("ghost", 401), ("alice", 401)]


def test_filters_and_pagination(owner_api: Api) -> None:
    for n in range(5):
        owner_api.create_user(username=f"page{n}")
    created = owner_api.get("/api/v2/audit", params={"action": "create", "resource_type": "user"}).json()
    assert created["count"] == 6  # five users plus the first user
    first = owner_api.get("/api/v2/audit", params={"action": "create", "limit": 2}).json()
    second = owner_api.get("/api/v2/audit", params={"action": "create", "limit": 2, "offset": 2}).json()
    assert len(first["audit_logs"]) == len(second["audit_logs"]) == 2
    assert {r["id"] for r in first["audit_logs"]}.isdisjoint(r["id"] for r in second["audit_logs"])
    assert [r["resource_target"] for r in first["audit_logs"]] == ["page4", "page3"]
    by_actor = owner_api.get("/api/v2/audit", params={"username": "page1"}).json()
    assert by_actor["count"] == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert owner_api.get("/api/v2/audit", params={"since": future}).json()["count"] == 0
    assert owner_api.get("/api/v2/audit", params={"until": future}).json()["count"] >= 6


def test_export_streams_json_lines(owner_api: Api) -> None:
    for n in range(3):
        owner_api.create_user(username=f"exp{n}")
    response = owner_api.get("/api/v2/audit/export", params={"action": "create"})
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [r["resource_target"] for r in lines] == ["exp2", "exp1", "exp0", "owner"]


@pytest.mark.parametrize(("roles", "status"), [(["auditor"], 200), (["owner"], 200),
                                               (["user-admin"], 403), (["template-admin"], 403),
                                               ([], 403)],
                         ids=["auditor reads", "owner reads", "user-admin may not", "template-admin may not",
                              "member may not"])
def test_only_owners_and_auditors_read_the_audit_log(owner_api: Api, roles: list[str], status: int) -> None:
    user = owner_api.create_user(roles=roles)
    reader = owner_api.as_user(owner_api.login(user["username"]))
    assert reader.get("/api/v2/audit").status_code == status
    assert reader.get("/api/v2/audit/export").status_code == status
