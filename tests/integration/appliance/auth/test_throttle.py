"""Password guessing is throttled per account even when the guesses arrive all at once, over real HTTP."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.api import DEFAULT_PASSWORD, Api

PARALLEL = 10
WRONG = "wrong-password-guess"


def _all_at_once(call: Callable[[Api], requests.Response], api: Api) -> Counter[int]:
    """PARALLEL threads, each with its own connection, released together by a barrier."""
    start = threading.Barrier(PARALLEL)

    def one(_: int) -> int:
        client = Api(api.base, api.token)
        client.get("/healthz")  # connect first, so the requests themselves leave together
        start.wait()
        return call(client).status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        return Counter(pool.map(one, range(PARALLEL)))


@pytest.mark.security(finding=6)
def test_ten_parallel_wrong_logins_for_one_account_get_five_401s_then_429s(api: Api) -> None:
    api.create_first_user("alice")
    codes = _all_at_once(lambda c: c.post("/api/v2/users/login", json={"username": "alice", "password": WRONG}),
                         api)
    assert codes == {401: 5, 429: 5}
    right = api.post("/api/v2/users/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    assert right.status_code == 429, "the right password waits out the window too"


@pytest.mark.security(finding=6)
def test_guessing_the_current_password_in_parallel_spends_the_login_budget(owner_api: Api) -> None:
    owner_api.create_user(username="bob")
    bob = owner_api.as_user(owner_api.login("bob"))
    change = {"old_password": WRONG, "password": "a-new-long-passphrase"}
    codes = _all_at_once(lambda c: c.put("/api/v2/users/me/password", json=change), bob)
    assert codes == {400: 5, 429: 5}
    # One budget for the account: the login is refused now, and so is the right current password.
    assert owner_api.post("/api/v2/users/login",
                          json={"username": "bob", "password": DEFAULT_PASSWORD}).status_code == 429
    right = bob.put("/api/v2/users/me/password", json={**change, "old_password": DEFAULT_PASSWORD})
    assert right.status_code == 429
    assert "try again in" in right.json()["message"]


def test_parallel_right_logins_all_succeed_and_forgive_earlier_failures(api: Api) -> None:
    api.create_first_user("alice")
    for _ in range(3):
        assert api.post("/api/v2/users/login", json={"username": "alice", "password": WRONG}).status_code == 401
    right = {"username": "alice", "password": DEFAULT_PASSWORD}
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda _: Api(api.base).post("/api/v2/users/login", json=right).status_code, range(2)))
    assert codes == [201, 201]
    for _ in range(4):
        assert api.post("/api/v2/users/login", json={"username": "alice", "password": WRONG}).status_code == 401


def test_a_right_current_password_changes_it_and_forgives_earlier_guesses(owner_api: Api) -> None:
    owner_api.create_user(username="bob")
    bob = owner_api.as_user(owner_api.login("bob"))
    wrong = bob.put("/api/v2/users/me/password", json={"old_password": WRONG, "password": "a-new-long-passphrase"})
    assert wrong.status_code == 400, wrong.text
    assert "current password is wrong" in wrong.json()["message"]
    changed = bob.put("/api/v2/users/me/password",
                      json={"old_password": DEFAULT_PASSWORD, "password": "a-new-long-passphrase"})
    assert changed.status_code == 200, changed.text
    assert owner_api.login("bob", "a-new-long-passphrase")
