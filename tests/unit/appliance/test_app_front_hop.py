"""FrontHop: behind the embedded front, the app sees the peer and headers a direct server would see."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from appliance.app import FrontHop


def _seen(hops: int, headers: dict[str, str]) -> tuple[str, str]:
    """(client address, scheme) the app gets for a request the front forwarded with `headers`."""
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return Response(f"{request.remote_addr} {request.scheme}")(environ, start_response)
    wrapped: Any = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops) if hops else app
    body = Client(FrontHop(wrapped)).get("/", headers=headers, environ_base={"REMOTE_ADDR": "localhost"}).text
    address, scheme = body.split()
    return address, scheme


@pytest.mark.parametrize(("hops", "forwarded_for", "proto", "expected"), [
    (0, "192.0.2.1", "http", ("192.0.2.1", "http")),  # a direct client: the front's peer
    (0, "6.6.6.6, 192.0.2.1", "https, https", ("192.0.2.1", "https")),  # its own header is ignored
    (1, "192.0.2.1", "http", ("192.0.2.1", "http")),  # no proxy header yet: the peer, as under gunicorn
    (1, "6.6.6.6, 198.51.100.7, 10.0.0.5", "http, https, http", ("198.51.100.7", "https")),  # the proxy's entry
])
def test_the_app_sees_the_client_as_a_direct_server_would(hops: int, forwarded_for: str, proto: str,
                                                           expected: tuple[str, str]) -> None:
    assert _seen(hops, {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": proto}) == expected
