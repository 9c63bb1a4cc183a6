"""The OpenAPI document describes exactly the endpoints that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from appliance.api.spec import OPERATIONS
from appliance.app import create_app
from appliance.sdk.users import UserResponse
from appliance.templates.archive import source_archive
from tests.support.api import Api
from tests.support.conformance import checked, conformance_problem
from tests.support.server import LiveServer

_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


def test_every_api_route_is_documented_and_every_documented_route_exists(api: Api, server: LiveServer) -> None:
    doc = api.get("/api/v2/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    app = create_app(server.config, server.db)
    served = {
        (_CONVERTER.sub(r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/") or rule.rule == "/healthz"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert documented == served


def test_request_bodies_and_error_shapes_are_described(api: Api) -> None:
    doc = api.get("/api/v2/openapi.json").json()
    create = doc["paths"]["/api/v2/users"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = doc["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert set(body["required"]) == {"username", "email", "password"}
    assert {"201", "400", "401", "403", "409"} <= set(create["responses"])
    assert doc["components"]["schemas"]["Error"]["required"] == ["message"]
    assert doc["paths"]["/api/v2/users/login"]["post"]["security"] == []


def test_an_answer_that_drifts_from_its_declared_model_is_caught() -> None:
    user = {"id": "u1", "username": "ada", "email": "ada@example.org", "name": "", "status": "active",
            "roles": [{"name": "owner", "display_name": "Owner"}], "created_at": "2026-01-02T03:04:05+00:00",
            "updated_at": "2026-01-02T03:04:05.250000+00:00", "last_seen_at": None}
    assert conformance_problem(UserResponse, json.dumps(user).encode()) is None
    extra = conformance_problem(UserResponse, json.dumps({**user, "hashed_password": "x"}).encode())
    assert extra is not None and "hashed_password" in extra
    assert conformance_problem(UserResponse, json.dumps({**user, "roles": ["owner"]}).encode()) is not None
    assert conformance_problem(UserResponse, json.dumps({**user, "status": 1}).encode()) is not None


def test_every_operation_a_session_can_reach_answers_with_its_declared_model(owner_api: Api, tmp_path: Path) -> None:
    """Users, tokens, audit, PKI and templates, answered through the sdk models and checked key by key.

    Builds and provisioner daemons need terraform; test_workspaces.py covers them under the same check.
    """
    checked.clear()
    user = owner_api.create_user(username="ada")
    owner_api.put(f"/api/v2/users/{user['id']}/roles", json={"roles": ["auditor"]})
    for verb in ("suspend", "activate"):
        owner_api.put(f"/api/v2/users/{user['id']}/status/{verb}")
    owner_api.put(f"/api/v2/users/{user['id']}/password", json={"password": "another-long-passphrase"})
    token = owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "ci"}).json()["token"]
    owner_api.get("/api/v2/users/me/keys/tokens")
    owner_api.delete(f"/api/v2/users/me/keys/{token['id']}")
    owner_api.get("/api/v2/users/me/gitsshkey")
    owner_api.put("/api/v2/users/me/gitsshkey")
    (tmp_path / "main.tf").write_text('terraform {}\n')
    digest = owner_api.post("/api/v2/files", data=source_archive(tmp_path),
                            headers={"Content-Type": "application/x-tar"}).json()["hash"]
    owner_api.post("/api/v2/templates", json={"name": "base", "description": "A template."})
    owner_api.request("PATCH", "/api/v2/templates/base", json={"display_name": "Base"})
    version = owner_api.post("/api/v2/templates/base/versions", json={"file_hash": digest, "activate": False}).json()
    for path in ("/api/v2/users/first", "/api/v2/users", "/api/v2/users/me", "/api/v2/audit", "/api/v2/buildinfo",
                 "/api/v2/pki/status", "/api/v2/templates", "/api/v2/templates/base",
                 "/api/v2/templates/base/versions", f"/api/v2/templates/base/versions/{version['id']}",
                 f"/api/v2/templateversions/{version['id']}/logs"):
        assert owner_api.get(path).status_code == 200, path
    owner_api.post(f"/api/v2/templates/base/versions/{version['name']}/archive")
    owner_api.post(f"/api/v2/templates/base/versions/{version['name']}/unarchive")
    owner_api.delete(f"/api/v2/users/{user['id']}")
    owner_api.post("/api/v2/users/logout")

    reached = set(checked)
    expected = {(op.method, op.path) for op in OPERATIONS if op.response is not None and op.tag in (
        "Users", "Tokens", "Audit", "PKI", "Meta")} - {("POST", "/api/v2/users/first"), ("POST", "/api/v2/users/login")}
    assert expected <= reached, sorted(expected - reached)
    assert {("POST", "/api/v2/templates/<template>/versions"), ("GET", "/api/v2/templateversions/<version_id>/logs"),
            ("POST", "/api/v2/templates/<template>/versions/<version>/archive")} <= reached
