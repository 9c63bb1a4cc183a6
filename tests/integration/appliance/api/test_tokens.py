"""API tokens: shown once, stored hashed, listed, revoked, expired, capped."""

from __future__ import annotations

import time

import psycopg

from tests.support.api import Api
from tests.support.server import live_server


def test_token_is_returned_once_and_works_as_bearer(owner_api: Api, shared_conninfo: str) -> None:
    created = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "ci", "lifetime": "7d"})
    assert created.status_code == 201
    key = created.json()["key"]
    assert owner_api.get("/api/v2/users/me", token=key).json()["username"] == "owner"
    listed = owner_api.get("/api/v2/users/me/keys/tokens").json()["tokens"]
    assert [t["token_name"] for t in listed] == ["ci"]
    assert key not in str(listed)
    with psycopg.connect(shared_conninfo) as conn:
        dumped = conn.execute("SELECT row_to_json(k)::text FROM api_keys k").fetchall()
    assert all(key.split("-")[1] not in row[0] for row in dumped)


def test_revoked_token_gets_401(owner_api: Api) -> None:
    created = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "ci"}).json()
    revoke = owner_api.delete(f"/api/v2/users/me/keys/{created['token']['id']}")
    assert revoke.status_code == 200
    refused = owner_api.get("/api/v2/users/me", token=created["key"])
    assert refused.status_code == 401
    assert "revoked" in refused.json()["message"]
    assert owner_api.get("/api/v2/users/me/keys/tokens").json()["tokens"] == []


def test_a_token_works_until_revoked_and_not_one_request_longer(owner_api: Api) -> None:
    created = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "ci"}).json()
    for _ in range(3):
        assert owner_api.get("/api/v2/users/me", token=created["key"]).status_code == 200
    owner_api.delete(f"/api/v2/users/me/keys/{created['token']['id']}")
    assert owner_api.get("/api/v2/users/me", token=created["key"]).status_code == 401
    assert owner_api.get("/api/v2/users", token=created["key"]).status_code == 401


def test_a_users_first_request_counts_as_seen(owner_api: Api) -> None:
    newcomer = owner_api.create_user(roles=[])
    token = owner_api.login(newcomer["username"])
    assert owner_api.get(f"/api/v2/users/{newcomer['id']}").json()["last_seen_at"] is None
    me = owner_api.get("/api/v2/users/me", token=token).json()
    assert me["last_seen_at"] is not None


def test_expired_token_gets_401(owner_api: Api) -> None:
    created = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "brief", "lifetime": "1s"})
    key = created.json()["key"]
    time.sleep(1.2)
    refused = owner_api.get("/api/v2/users/me", token=key)
    assert refused.status_code == 401
    assert "expired" in refused.json()["message"]


def test_a_tampered_secret_gets_401(owner_api: Api) -> None:
    key = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "ci"}).json()["key"]
    key_id, secret = key.split("-")
    forged = f"{key_id}-{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"
    assert owner_api.get("/api/v2/users/me", token=forged).status_code == 401


def test_token_names_are_unique_per_user(owner_api: Api) -> None:
    assert owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "ci"}).status_code == 201
    again = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "ci"})
    assert again.status_code == 409
    assert again.json()["validations"][0]["field"] == "token_name"


def test_members_cannot_manage_other_users_tokens(owner_api: Api) -> None:
    member = owner_api.create_user(username="mem")
    member_api = owner_api.as_user(owner_api.login("mem"))
    owner_token = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "mine"}).json()
    assert member_api.get("/api/v2/users/owner/keys/tokens").status_code == 404
    assert member_api.delete(f"/api/v2/users/owner/keys/{owner_token['token']['id']}").status_code == 404
    # Owners may act for others.
    made = owner_api.post(f"/api/v2/users/{member['id']}/keys/tokens", json={"token_name": "for-mem"})
    assert made.status_code == 201


def test_lifetime_above_the_configured_maximum_is_refused(shared_conninfo: str) -> None:
    from datetime import timedelta

    from tests.support.postgres import truncate_all

    truncate_all(shared_conninfo)
    with live_server(shared_conninfo, max_token_lifetime=timedelta(days=7)) as live:
        api = Api(live.url)
        api.create_first_user()
        owner = api.as_user(api.login("owner"))
        response = owner.post("/api/v2/users/me/keys/tokens", json={"token_name": "long", "lifetime": "30d"})
        assert response.status_code == 400
        assert response.json()["message"] == "Token lifetime 30d exceeds the maximum 7d."
        default = owner.post("/api/v2/users/me/keys/tokens", json={"token_name": "dflt"}).json()
        assert default["token"]["lifetime_seconds"] == 7 * 86400
