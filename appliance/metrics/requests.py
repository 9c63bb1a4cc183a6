"""Counting the Flask app's requests: by status, method and route template (never the raw path).

A path label from the URL would make one series per user, workspace and token; the route template
(`/api/v2/users/<user>`) is bounded by the code. A request no route matched is "unknown", and a
method outside HTTP's usual set "OTHER", so a scanner cannot grow the series either.
"""

from __future__ import annotations

import time
from functools import cache

from flask import Flask, Request, Response, g, request
from prometheus_client import Counter, Histogram

from appliance.metrics.live import http_metrics

UNKNOWN_PATH = "unknown"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(req: Request) -> str:
    """The matched route's template, as Flask wrote it, or "unknown"."""
    rule = req.url_rule
    return rule.rule if rule is not None else UNKNOWN_PATH


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


@cache  # bounded by routes x methods x status codes; labels() takes a lock and checks on every call
def _series(code: str, method: str, path: str) -> tuple[Counter, Histogram]:
    metrics = http_metrics()
    return metrics.requests.labels(code, method, path), metrics.latencies.labels(method, path)


def _started() -> None:
    g.metrics_started = time.perf_counter()
    http_metrics().in_flight.inc()


def _answered(response: Response) -> Response:
    started = g.get("metrics_started")
    if started is not None:
        answered, latency = _series(str(response.status_code), method_label(request.method), route_label(request))
        answered.inc()
        latency.observe(time.perf_counter() - started)
    return response


def _ended(_: BaseException | None) -> None:
    # teardown runs for every request that _started, even one whose answer failed on the way out.
    if g.pop("metrics_started", None) is not None:
        http_metrics().in_flight.dec()


def init_app(app: Flask) -> None:
    """Register first, so a before_request hook that answers early (an upload refused) is counted too."""
    http_metrics()
    app.before_request_funcs.setdefault(None, []).insert(0, _started)
    app.after_request(_answered)
    app.teardown_request(_ended)
