"""The gateway behind the embedded front: the API's authentication and errors, and the routing rule."""

from __future__ import annotations

import requests

from tests.support.api import Api
from tests.support.server import LiveServer
from tests.support.workspaces import MINIMAL, push

MISSING = "00000000-0000-4000-8000-000000000000"


def test_a_follow_without_credentials_gets_the_apis_json_error(server: LiveServer) -> None:
    refused = requests.get(f"{server.url}/api/v2/workspacebuilds/{MISSING}/logs?follow=true", timeout=10)
    assert refused.status_code == 401
    assert refused.json() == {"message": "You are not logged in.",
                              "detail": "Send 'Authorization: Bearer <token>' or log in at /login."}


def test_a_follow_of_a_build_that_does_not_exist_is_404_and_a_bad_after_is_400(owner_api: Api) -> None:
    missing = owner_api.get(f"/api/v2/workspacebuilds/{MISSING}/logs", headers={"Accept": "text/event-stream"})
    assert missing.status_code == 404 and "does not exist" in missing.json()["message"]
    for after in ("-1", "\u00b2", str(2**63)):  # negative, a digit int() refuses, past PostgreSQL's bigint
        bad = owner_api.get(f"/api/v2/workspacebuilds/{MISSING}/logs", params={"follow": "true", "after": after})
        assert bad.status_code == 400 and bad.json()["validations"][0]["field"] == "after", (after, bad.text)
    # EventSource sends back only the ids the stream wrote: anything else is refused, never a 500.
    odd = owner_api.get(f"/api/v2/workspacebuilds/{MISSING}/logs?follow=true", headers={"Last-Event-ID": "\xb2"})
    assert odd.status_code == 400 and odd.json()["validations"][0]["field"] == "Last-Event-ID", odd.text


def test_the_console_cookie_follows_a_queued_import_and_plain_reads_stay_json(server: LiveServer,
                                                                              owner_api: Api) -> None:
    version = push(owner_api, MINIMAL, "minimal")  # no daemon runs here: the import stays queued
    path = f"/api/v2/templateversions/{version['id']}/logs"
    assert owner_api.token is not None
    with requests.get(f"{server.url}{path}?after=0&follow=true", stream=True, timeout=10,
                      cookies={"appliance_session_token": owner_api.token}) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"] == "text/event-stream"
        assert stream.headers["X-Accel-Buffering"] == "no"
        assert next(stream.iter_lines(decode_unicode=True)) == "retry: 1000"
    plain = owner_api.get(f"{path}?follow=false")
    assert plain.status_code == 200 and plain.json()["job"]["status"] == "pending"


def test_a_client_cannot_forge_its_address_through_the_front(server: LiveServer, owner_api: Api) -> None:
    owner_api.post("/api/v2/users/login", json={"username": "nobody", "password": "wrong-password-1"},
                   headers={"X-Forwarded-For": "203.0.113.9"})
    rows = owner_api.get("/api/v2/audit", params={"limit": 1, "action": "login"}).json()["audit_logs"]
    assert rows and rows[0]["username"] == "nobody", rows
    assert rows[0]["ip"] == "127.0.0.1", "the front's hop is trusted, the client's header is not"
