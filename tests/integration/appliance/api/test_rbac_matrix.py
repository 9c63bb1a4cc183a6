"""Each role against each endpoint, over real HTTP: the RBAC table as users meet it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.postgres import truncate_all
from tests.support.server import LiveServer

ROLES = ["owner", "user-admin", "template-admin", "auditor", "member"]


@dataclass
class World:
    owner: Api
    target: dict[str, Any]   # a plain member other than the caller
    caller: dict[str, Any]


Call = Callable[[Api, World], Any]


def _new_user_body(n: str) -> dict[str, str]:
    return {"username": f"made{n}", "email": f"made{n}@example.org", "password": DEFAULT_PASSWORD}


EVERYONE = set(ROLES)
READERS = {"owner", "user-admin", "template-admin", "auditor"}
USER_ADMINS = {"owner", "user-admin"}
AUDITORS = {"owner", "auditor"}
OWNERS = {"owner"}


def other(w: World) -> str:
    return f"/api/v2/users/{w.target['id']}"


def token_body(w: World) -> dict[str, str]:
    return {"token_name": f"t-{w.target['username']}"}


# endpoint name -> (how to call it, roles allowed)
ENDPOINTS: dict[str, tuple[Call, set[str]]] = {
    "GET /users/me": (lambda a, w: a.get("/api/v2/users/me"), EVERYONE),
    # Listing is allowed to all, but only these roles see anyone besides themselves.
    "GET /users sees others": (lambda a, w: _sees_target(a.get("/api/v2/users"), w), READERS),
    "GET /users/{other}": (lambda a, w: a.get(other(w)), READERS),
    "POST /users": (lambda a, w: a.post("/api/v2/users", json=_new_user_body(w.caller["username"])), USER_ADMINS),
    "PUT /users/{other}/status/suspend": (lambda a, w: a.put(other(w) + "/status/suspend"), USER_ADMINS),
    "PUT /users/{other}/roles": (lambda a, w: a.put(other(w) + "/roles", json={"roles": ["auditor"]}), OWNERS),
    "PUT /users/{other}/password": (lambda a, w: a.put(other(w) + "/password", json={"password": "reset-by-admin-1"}),
                                    USER_ADMINS),
    "DELETE /users/{other}": (lambda a, w: a.delete(other(w)), USER_ADMINS),
    "POST /users/me/keys/tokens": (lambda a, w: a.post("/api/v2/users/me/keys/tokens", json=token_body(w)), EVERYONE),
    "GET /users/{other}/keys/tokens": (lambda a, w: a.get(other(w) + "/keys/tokens"), OWNERS),
    "POST /users/{other}/keys/tokens": (lambda a, w: a.post(other(w) + "/keys/tokens", json=token_body(w)), OWNERS),
    "GET /audit": (lambda a, w: a.get("/api/v2/audit"), AUDITORS),
    "GET /audit/export": (lambda a, w: a.get("/api/v2/audit/export"), AUDITORS),
    "GET /pki/status": (lambda a, w: a.get("/api/v2/pki/status"), OWNERS),
    "GET /pki/ca.pem": (lambda a, w: a.get("/api/v2/pki/ca.pem"), EVERYONE),
}


class Outcome:
    """A call's result reduced to allowed or refused."""

    def __init__(self, status_code: int, text: str) -> None:
        self.status_code, self.text = status_code, text


def _sees_target(response: Any, world: World) -> Outcome:
    names = [u["username"] for u in response.json()["users"]]
    return Outcome(200 if world.target["username"] in names else 403, str(names))


CASES = [(role, name) for name in ENDPOINTS for role in ROLES]


@dataclass
class Cast:
    owner: Api
    callers: dict[str, tuple[dict[str, Any], Api]]


@pytest.fixture(scope="module")
def cast(server: LiveServer, shared_conninfo: str) -> Cast:
    """One logged-in user per role, made once: password hashing dominates the cost of this table."""
    truncate_all(shared_conninfo)
    api = Api(server.url)
    api.create_first_user("owner")
    owner = api.as_user(api.login("owner"))
    callers = {}
    for role in ROLES:
        user = owner.create_user(roles=[] if role == "member" else [role], username=f"as-{role}")
        callers[role] = (user, owner.as_user(owner.login(user["username"])))
    return Cast(owner, callers)


@pytest.mark.parametrize(("role", "endpoint"), CASES,
                         ids=[f"{role} {'may' if role in ENDPOINTS[name][1] else 'may not'} {name}"
                              for role, name in CASES])
def test_role_against_endpoint(cast: Cast, role: str, endpoint: str) -> None:
    call, allowed = ENDPOINTS[endpoint]
    caller, api = cast.callers[role]
    target = cast.owner.create_user()
    response = call(api, World(cast.owner, target, caller))
    if role in allowed:
        assert response.status_code < 300, f"{role} refused {endpoint}: {response.text}"
    else:
        # Users one may not read are reported missing (404) so names cannot be probed.
        assert response.status_code in (403, 404), f"{role} allowed {endpoint}: {response.status_code}"
