"""GET /api/v2/registry/token over real HTTP: who gets which actions, and how refusals look to a client."""

from __future__ import annotations

import base64
from typing import Any

import jwt
import pytest
import requests

from tests.support.api import DEFAULT_PASSWORD, Api

TOKEN = "/api/v2/registry/token"
SERVICE = "appliance-registry"


def _basic(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def _ask(api: Api, headers: dict[str, str] | None = None, scope: str = "repository:team/app:pull,push",
         **params: str) -> requests.Response:
    return requests.get(api.base + TOKEN, params={"service": SERVICE, "scope": scope, **params},
                        headers=headers or {}, timeout=30)


def _access(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] == body["access_token"] and body["expires_in"] > 0
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    access: list[dict[str, Any]] = claims["access"]
    return access


def _api_token(api: Api, login: str) -> str:
    made = api.as_user(api.login(login)).post("/api/v2/users/me/keys/tokens", json={"token_name": "registry"})
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def test_anonymous_gets_401_with_the_bearer_challenge(api: Api) -> None:
    response = _ask(api)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="{api.base}{TOKEN}",service="{SERVICE}"')
    assert response.json()["message"]


@pytest.mark.parametrize(("roles", "actions"), [([], ["pull"]), (["template-admin"], ["pull", "push"]),
                                                (["owner"], ["pull", "push"]), (["auditor"], ["pull"])],
                         ids=["a member pulls only", "a template admin pushes", "an owner pushes",
                              "an auditor pulls only"])
def test_basic_username_and_api_token_gets_what_the_role_allows(owner_api: Api, roles: list[str],
                                                                actions: list[str]) -> None:
    user = owner_api.create_user(roles=roles)
    response = _ask(owner_api, _basic(user["username"], _api_token(owner_api, user["username"])))
    assert _access(response) == [{"type": "repository", "name": "team/app", "actions": actions}]
    assert jwt.decode(response.json()["token"], options={"verify_signature": False})["sub"] == user["username"]


def test_basic_with_a_password_and_a_bearer_session_both_work(owner_api: Api) -> None:
    admin = owner_api.create_user(roles=["template-admin"])
    by_password = _ask(owner_api, _basic(admin["username"], DEFAULT_PASSWORD))
    assert _access(by_password)[0]["actions"] == ["pull", "push"]
    by_session = _ask(owner_api, {"Authorization": f"Bearer {owner_api.login(admin['username'])}"})
    assert _access(by_session)[0]["actions"] == ["pull", "push"]


def test_no_scope_gives_a_token_with_no_access(owner_api: Api) -> None:
    response = requests.get(owner_api.base + TOKEN, params={"service": SERVICE},
                            headers={"Authorization": f"Bearer {owner_api.token}"}, timeout=30)
    assert _access(response) == []


@pytest.mark.parametrize("secret", [DEFAULT_PASSWORD + "x", "AAAAAAAAAA-BBBBBBBBBBBBBBBBBBBBBB"],
                         ids=["a wrong password", "an unknown token"])
def test_wrong_credentials_get_401_with_the_challenge(owner_api: Api, secret: str) -> None:
    response = _ask(owner_api, _basic("owner", secret))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_another_accounts_token_under_my_name_is_refused(owner_api: Api) -> None:
    member = owner_api.create_user()
    response = _ask(owner_api, _basic(member["username"], _api_token(owner_api, "owner")))
    assert response.status_code == 401
    assert "does not belong" in response.json()["message"]


@pytest.mark.parametrize(("params", "field"), [({"service": "docker.io"}, "service"),
                                               ({"scope": "repository:Bad Name:pull"}, "scope")],
                         ids=["another service", "a malformed repository name"])
def test_bad_input_is_refused_naming_the_field(owner_api: Api, params: dict[str, str], field: str) -> None:
    response = _ask(owner_api, {"Authorization": f"Bearer {owner_api.token}"}, **params)
    assert response.status_code == 400, response.text
    assert response.json()["validations"][0]["field"] == field
