"""Production serving: gunicorn runs appliance.wsgi:app against an external PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from tests.support.api import Api
from tests.support.postgres import conninfo_url, free_port
from tests.support.server import wait_for_health
from tests.support.workspaces import MINIMAL, push


def _gunicorn(postgres_url: str, port: int, *flags: str, **settings: str) -> subprocess.Popen[str]:
    env = {**os.environ, "APPLIANCE_POSTGRES_URL": postgres_url,
           "APPLIANCE_ACCESS_URL": f"http://127.0.0.1:{port}", "APPLIANCE_LOG_LEVEL": "warning", **settings}
    return subprocess.Popen([sys.executable, "-m", "gunicorn", *flags, "--workers", "2", "--bind",
                             f"127.0.0.1:{port}", "appliance.wsgi:app"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@contextmanager
def _served(fresh_db: str) -> Iterator[str]:
    """gunicorn with two workers on a free port, answering; its base URL. Stopped after the block."""
    port = free_port()
    process = _gunicorn(conninfo_url(fresh_db), port)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, alive=lambda: process.poll() is None)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def test_gunicorn_serves_the_api_from_two_workers(fresh_db: str) -> None:
    with _served(fresh_db) as base:
        assert requests.post(base + "/api/v2/users/first", timeout=10, json={
            "username": "admin", "email": "admin@example.org", "password": "correct-horse-battery"}).status_code == 201
        token = requests.post(base + "/api/v2/users/login", timeout=10, json={
            "username": "admin", "password": "correct-horse-battery"}).json()["session_token"]
        # Whichever worker answers, the session (kept in Postgres) is valid.
        for _ in range(10):
            me = requests.get(base + "/api/v2/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert me.json()["username"] == "admin"
        # A log follow must never hold a worker: without nginx routing it to the gateway, it is refused.
        version = push(Api(base, token), MINIMAL, "minimal")
        follow = requests.get(f"{base}/api/v2/templateversions/{version['id']}/logs?follow=true", timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
        assert follow.status_code == 421 and "served by the gateway" in follow.json()["message"]


def _me(base: str, token: str) -> requests.Response:
    # A new connection each time, so gunicorn hands requests to whichever worker accepts first.
    return requests.get(base + "/api/v2/users/me", headers={"Authorization": f"Bearer {token}",
                                                            "Connection": "close"}, timeout=10)


def test_every_worker_refuses_a_token_from_the_request_after_its_revocation(fresh_db: str) -> None:
    with _served(fresh_db) as base:
        requests.post(base + "/api/v2/users/first", timeout=10, json={
            "username": "admin", "email": "admin@example.org", "password": "correct-horse-battery"})
        session = requests.post(base + "/api/v2/users/login", timeout=10, json={
            "username": "admin", "password": "correct-horse-battery"}).json()["session_token"]
        owner = {"Authorization": f"Bearer {session}"}
        created = requests.post(base + "/api/v2/users/me/keys/tokens", headers=owner, timeout=10,
                                json={"token_name": "ci"}).json()
        # Both workers have served the token before it is revoked.
        assert all(_me(base, created["key"]).status_code == 200 for _ in range(20))
        revoked = requests.delete(base + f"/api/v2/users/me/keys/{created['token']['id']}",
                                  headers=owner, timeout=10)
        assert revoked.status_code == 200
        refused = [_me(base, created["key"]) for _ in range(20)]
        assert [r.status_code for r in refused] == [401] * 20
        assert all("revoked" in r.json()["message"] for r in refused)


def test_every_worker_sees_a_suspension_a_role_change_and_a_logout_from_the_next_request(fresh_db: str) -> None:
    """Each worker has the member's token in its cache (docs/adr/0041) when the change is made."""
    with _served(fresh_db) as base:
        password = "correct-horse-battery"
        requests.post(base + "/api/v2/users/first", timeout=10, json={
            "username": "admin", "email": "admin@example.org", "password": password})
        owner = {"Authorization": "Bearer " + requests.post(base + "/api/v2/users/login", timeout=10, json={
            "username": "admin", "password": password}).json()["session_token"]}
        requests.post(base + "/api/v2/users", headers=owner, timeout=10, json={
            "username": "member", "email": "member@example.org", "password": password})

        def member_session() -> str:
            token: str = requests.post(base + "/api/v2/users/login", timeout=10, json={
                "username": "member", "password": password}).json()["session_token"]
            assert all(_me(base, token).status_code == 200 for _ in range(20))  # cached by both workers
            return token

        def put(path: str, body: object = None) -> None:
            assert requests.put(base + path, headers=owner, json=body, timeout=10).status_code == 200

        token = member_session()
        put("/api/v2/users/member/roles", {"roles": ["template-admin"]})
        assert [[r["name"] for r in _me(base, token).json()["roles"]] for _ in range(20)] == [["template-admin"]] * 20
        put("/api/v2/users/member/status/suspend")
        suspended = [_me(base, token) for _ in range(20)]
        assert [r.status_code for r in suspended] == [401] * 20
        assert all("revoked" in r.json()["message"] or "suspended" in r.json()["message"] for r in suspended)
        put("/api/v2/users/member/status/activate")
        token = member_session()
        assert requests.post(base + "/api/v2/users/logout", headers={"Authorization": f"Bearer {token}"},
                             timeout=10).status_code == 200
        assert [_me(base, token).status_code for _ in range(20)] == [401] * 20


def test_wsgi_refuses_a_schema_that_is_behind(empty_db: str) -> None:
    process = _gunicorn(conninfo_url(empty_db), free_port())
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "Run 'appliance migrate' first" in output


def test_installed_gunicorn_logs_only_json_events_and_no_access_log(fresh_db: str) -> None:
    """As the console unit runs it: gunicorn's own lines are the app's JSON events; no access log with queries."""
    port = free_port()
    process = _gunicorn(conninfo_url(fresh_db), port, "--config", "python:appliance.server.gunicorn_conf",
                        APPLIANCE_LOG_FORMAT="json", APPLIANCE_LOG_LEVEL="info")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, alive=lambda: process.poll() is None)
        requests.get(base + "/setup?token=secret-in-a-query", timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    events = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is one JSON event
    assert all({"time", "level", "logger", "event"} <= set(e) for e in events), output
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["event"] for e in events), output
    assert "secret-in-a-query" not in output
