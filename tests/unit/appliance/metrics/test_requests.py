"""Request labels: the route template a request matched, never its raw path; unknown routes and methods bounded."""

from __future__ import annotations

import pytest
from flask import Flask, request

from appliance.metrics import requests as metrics_requests
from appliance.metrics.live import PROCESS_REGISTRY

COUNTER = "coderd_api_requests_processed_total"


@pytest.fixture(scope="module")
def app() -> Flask:
    app = Flask("labels")
    metrics_requests.init_app(app)
    app.add_url_rule("/api/v2/users/<user>", "user", lambda user: user)
    app.add_url_rule("/api/v2/files/<path:name>", "file", lambda name: name)
    return app


def count(path: str, method: str = "GET", code: str = "200") -> float:
    found = PROCESS_REGISTRY.get_sample_value(COUNTER, {"code": code, "method": method, "path": path})
    return found or 0.0


@pytest.mark.parametrize(("url", "template"), [
    ("/api/v2/users/alice", "/api/v2/users/<user>"),
    ("/api/v2/users/0b6f0c3e-8d5e-4a55-9d8e-2f6a1c7c1f00", "/api/v2/users/<user>"),
    ("/api/v2/files/a/b/c.tar", "/api/v2/files/<path:name>"),
    ("/no/such/route/42", "unknown"),
], ids=["a user name", "a user id", "a path converter", "a path no route matches"])
def test_a_request_is_labelled_with_the_route_template(app: Flask, url: str, template: str) -> None:
    with app.test_request_context(url):
        assert metrics_requests.route_label(request) == template


def test_requests_to_one_route_share_one_series(app: Flask) -> None:
    before = count("/api/v2/users/<user>")
    client = app.test_client()
    for name in ("alice", "bob", "carol"):
        assert client.get(f"/api/v2/users/{name}").status_code == 200
    assert count("/api/v2/users/<user>") - before == 3
    assert not [m for m in PROCESS_REGISTRY.collect() for s in m.samples if "alice" in s.labels.get("path", "")]


def test_an_unmatched_path_and_an_odd_method_are_bounded(app: Flask) -> None:
    before_unknown = count("unknown", code="404")
    before_other = count("unknown", method="OTHER", code="405") + count("unknown", method="OTHER", code="404")
    client = app.test_client()
    assert client.get("/scanner/probe-1").status_code == 404
    assert client.open("/api/v2/users/alice", method="PROPFIND").status_code == 405
    assert count("unknown", code="404") - before_unknown == 1
    after_other = count("unknown", method="OTHER", code="405") + count("unknown", method="OTHER", code="404")
    assert after_other - before_other == 1


def test_requests_in_flight_return_to_zero(app: Flask) -> None:
    app.test_client().get("/api/v2/users/dave")
    assert PROCESS_REGISTRY.get_sample_value("coderd_api_concurrent_requests") == 0
