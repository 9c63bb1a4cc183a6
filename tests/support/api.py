"""A small API client for tests: real HTTP with requests, token or cookie authentication."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import requests

DEFAULT_PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Api:
    base: str
    token: str | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        bearer = token if token is not None else self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return self.session.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def as_user(self, token: str) -> Api:
        return Api(self.base, token)

    def create_first_user(self, username: str = "owner", password: str = DEFAULT_PASSWORD) -> dict[str, Any]:
        response = self.post("/api/v2/users/first", json={
            "username": username, "email": f"{username}@example.org", "password": password})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def login(self, username: str, password: str = DEFAULT_PASSWORD) -> str:
        response = self.post("/api/v2/users/login", json={"username": username, "password": password})
        assert response.status_code == 201, response.text
        token: str = response.json()["session_token"]
        return token

    def create_user(self, roles: list[str] | None = None, username: str | None = None,
                    password: str = DEFAULT_PASSWORD) -> dict[str, Any]:
        """Create a user (with self.token as an admin), give it roles, return it."""
        username = username or f"user{next(_counter)}"
        response = self.post("/api/v2/users", json={
            "username": username, "email": f"{username}@example.org", "password": password})
        assert response.status_code == 201, response.text
        user: dict[str, Any] = response.json()
        if roles:
            response = self.put(f"/api/v2/users/{user['id']}/roles", json={"roles": roles})
            assert response.status_code == 200, response.text
            user = response.json()
        return user


def console_session(base: str, username: str) -> requests.Session:
    """A browser's session: logged in through the console's form (CSRF token and all), holding its cookie."""
    session = requests.Session()
    found = _CSRF.search(session.get(base + "/login", timeout=10).text)
    assert found, "the login form has no CSRF token"
    session.post(base + "/login", timeout=10,
                 data={"csrf_token": found.group(1), "login": username, "password": DEFAULT_PASSWORD, "next": ""})
    return session
