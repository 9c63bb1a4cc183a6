"""The security-headers middleware: defaults on every response, a view's own value wins."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from werkzeug.test import Client
from werkzeug.wrappers import Response

from appliance.app import CONTENT_SECURITY_POLICY, SecureHeaders


def _app(own: dict[str, str] | None = None) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return Response("{}", mimetype="application/json", headers=own or {})(environ, start_response)
    return SecureHeaders(app)


def test_every_response_gets_the_defaults_and_no_store() -> None:
    headers = Client(_app()).get("/api/v2/users/me").headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in headers


def test_a_views_own_header_is_kept_not_doubled() -> None:
    headers = Client(_app({"cache-control": "max-age=60", "X-Frame-Options": "SAMEORIGIN"})).get("/x").headers
    assert headers.getlist("Cache-Control") == ["max-age=60"]
    assert headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]


def test_mirror_files_may_be_cached_and_https_gets_hsts() -> None:
    headers = Client(_app()).get("/tf/mirror/index.json", base_url="https://appliance.example").headers
    assert "Cache-Control" not in headers
    assert headers["Strict-Transport-Security"].startswith("max-age=")
