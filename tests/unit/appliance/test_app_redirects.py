"""Where an app's redirects lead once the path prefix is put back (appliance/gateway/apps.py)."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.gateway.apps import _location
from appliance.workspaces.apps import AppTarget

pytestmark = pytest.mark.unit

PREFIX = "/@dev/ws.main/apps/code"


def _target(base_path: str = "") -> Any:
    return AppTarget(agent=None, slug="code", share="owner", scheme="http", netloc="localhost:8080",  # type: ignore[arg-type]
                     host="localhost", port=8080, base_path=base_path, is_owner=True, health=None)


@pytest.mark.parametrize(("location", "expected"), [
    ("/login?x=1#top", f"{PREFIX}/login?x=1#top"),  # root-relative: back under the prefix
    ("http://localhost:8080/a", f"{PREFIX}/a"),  # the app's own loopback URL
    ("http://127.0.0.1:8080/", f"{PREFIX}/"),
    ("other", "other"),  # relative: the browser resolves it under the prefix already
    (f"{PREFIX}/done", f"{PREFIX}/done"),  # the app honoured X-Forwarded-Prefix
    ("https://example.org/x", "https://example.org/x"),  # elsewhere: left alone
    ("http://localhost:9999/x", "http://localhost:9999/x"),  # another port is another app
])
def test_a_redirect_stays_under_the_prefix(location: str, expected: str) -> None:
    assert _location(location, _target(), PREFIX) == expected


def test_the_app_urls_own_path_is_taken_off_before_the_prefix_goes_on() -> None:
    assert _location("/base/page", _target("/base"), PREFIX) == f"{PREFIX}/page"
    assert _location("/basement", _target("/base"), PREFIX) == f"{PREFIX}/basement"
