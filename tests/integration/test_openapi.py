"""The OpenAPI document describes exactly the endpoints that exist."""

from __future__ import annotations

import re

from appliance.app import create_app
from tests.support.api import Api
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
