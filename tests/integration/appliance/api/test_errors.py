"""Every documented error status, as JSON {"message", "detail"} naming the problem, never a trace."""

from __future__ import annotations

import pytest

from tests.support.api import DEFAULT_PASSWORD, Api


def _assert_error(response: object, status: int, fragment: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["Content-Type"].startswith("application/json")  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert set(body) >= {"message", "detail"}
    assert fragment in str(body["message"])
    assert "Traceback" not in response.text  # type: ignore[attr-defined]
    return body


@pytest.mark.parametrize(("data", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"", "must be a JSON object"),
], ids=["broken json", "array instead of object", "empty body"])
def test_malformed_json_is_400(owner_api: Api, data: bytes, fragment: str) -> None:
    response = owner_api.post("/api/v2/users", data=data, headers={"Content-Type": "application/json"})
    _assert_error(response, 400, fragment)


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "a@example.org", "password": DEFAULT_PASSWORD}, "username"),
    ({"username": 7, "email": "a@example.org", "password": DEFAULT_PASSWORD}, "username"),
    ({"username": "a", "email": "a@example.org", "password": DEFAULT_PASSWORD, "admin": True}, "admin"),
], ids=["missing field", "wrong type", "unknown field"])
def test_invalid_fields_are_400_naming_the_field(owner_api: Api, body: dict[str, object], field: str) -> None:
    result = _assert_error(owner_api.post("/api/v2/users", json=body), 400, f"'{field}'")
    assert result["validations"][0]["field"] == field  # type: ignore[index]


def test_wrong_content_type_is_415(owner_api: Api) -> None:
    response = owner_api.post("/api/v2/users", data="username=a", headers={"Content-Type": "text/plain"})
    _assert_error(response, 415, "must be JSON")


def test_bad_query_parameter_is_400(owner_api: Api) -> None:
    _assert_error(owner_api.get("/api/v2/audit", params={"limit": "lots"}), 400, "'limit'")


def test_no_credentials_is_401(api: Api) -> None:
    _assert_error(api.get("/api/v2/users/me"), 401, "not logged in")


def test_garbage_token_is_401(api: Api) -> None:
    _assert_error(api.get("/api/v2/users/me", token="garbage"), 401, "Invalid session token")


def test_forbidden_is_403(owner_api: Api) -> None:
    owner_api.create_user(username="mem")
    member = owner_api.as_user(owner_api.login("mem"))
    _assert_error(member.get("/api/v2/audit"), 403, "not allowed to read this audit log")


def test_unknown_user_is_404(owner_api: Api) -> None:
    _assert_error(owner_api.get("/api/v2/users/nobody"), 404, "No user 'nobody'")


def test_unknown_route_is_json_404(api: Api) -> None:
    _assert_error(api.get("/api/v2/nothing-here"), 404, "No API endpoint GET /api/v2/nothing-here")


def test_wrong_method_is_json_405(api: Api) -> None:
    _assert_error(api.delete("/api/v2/buildinfo"), 405, "not allowed")


def test_duplicate_username_is_409(owner_api: Api) -> None:
    owner_api.create_user(username="dup")
    body = {"username": "DUP", "email": "other@example.org", "password": DEFAULT_PASSWORD}
    _assert_error(owner_api.post("/api/v2/users", json=body), 409, "username 'DUP' already exists")


def test_repeated_failed_logins_are_429_with_retry_after(api: Api) -> None:
    api.create_first_user("alice")
    wrong = {"username": "alice", "password": "wrong-password"}
    for _ in range(5):
        assert api.post("/api/v2/users/login", json=wrong).status_code == 401
    # Even the right password is refused until the window passes.
    response = api.post("/api/v2/users/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    _assert_error(response, 429, "Too many failed logins for this account")
    assert 0 < int(response.headers["Retry-After"]) <= 900
    # The email login shares the account's budget.
    by_email = api.post("/api/v2/users/login", json={"email": "alice@example.org", "password": DEFAULT_PASSWORD})
    assert by_email.status_code == 429


def test_one_address_guessing_many_accounts_is_throttled(api: Api) -> None:
    api.create_first_user("alice")
    for n in range(20):
        api.post("/api/v2/users/login", json={"username": f"guess{n}", "password": "wrong-password"})
    response = api.post("/api/v2/users/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    _assert_error(response, 429, "for this address")


def test_healthz_and_buildinfo(api: Api) -> None:
    health = api.get("/healthz")
    assert (health.status_code, health.text) == (200, "OK")
    info = api.get("/api/v2/buildinfo").json()
    assert info["version"]
    assert len(info["commit"]) == 40 or info["commit"] == "unknown"


def test_the_trust_bundle_and_crl_are_public_pem(api: Api) -> None:
    bundle = api.get("/api/v2/pki/ca.pem")
    assert bundle.status_code == 200
    assert bundle.headers["Content-Type"] == "application/x-pem-file"
    assert bundle.text.count("BEGIN CERTIFICATE") == 2
    crl = api.get("/api/v2/pki/crl.pem")
    assert crl.text.startswith("-----BEGIN X509 CRL-----")
