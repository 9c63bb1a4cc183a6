"""Maintenance mode at the HTTP edge: every mutating request holds the guard, or gets 503 naming the upgrade.

A mutating request (POST, PUT, PATCH, DELETE) opens a transaction on the database's side pool that
calls maintenance_guard() and stays open until the request ends, so `appliance maintenance enter`
waits for it (appliance/maintenance.py). Reads pay nothing. The exempt endpoints are what people and
the upgrade itself need while maintenance is on: logging in and out, and reports on running jobs
so the drain can finish them (claiming a new job is refused by the claim itself).
"""

from __future__ import annotations

from contextlib import ExitStack

from flask import Flask, Response, g, request

from appliance import maintenance
from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.spec import endpoint, json_response
from appliance.auth.web import database
from appliance.sdk.releases import MaintenanceStatus

TAG = "Maintenance"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Endpoints that still write during maintenance. The console's upgrade path adds its own here.
EXEMPT_ENDPOINTS: set[str] = {
    "api.login", "api.logout", "console.login", "console.logout",
    "api.acquire",  # answers 204 by itself during maintenance: no job is claimed
    "api.heartbeat", "api.append_logs", "api.save_state", "api.complete_import", "api.complete_build", "api.fail",
}


def hold_guard() -> None:
    """before_request: refuse a write during maintenance, or hold the guard until the request ends."""
    if request.method in _SAFE_METHODS or request.endpoint in EXEMPT_ENDPOINTS or request.endpoint is None:
        return
    stack = ExitStack()
    try:
        conn = stack.enter_context(database().side().transaction())
        state = maintenance.guard(conn)
    except BaseException:
        stack.close()
        raise
    if state.active:
        stack.close()
        g.maintenance = state
        raise maintenance.refusal(state)
    g.maintenance_guard = stack


def release_guard(_: BaseException | None) -> None:
    """teardown_request: the request's writes are done (committed or not); let `enter` proceed."""
    stack: ExitStack | None = g.pop("maintenance_guard", None)
    if stack is not None:
        stack.close()


def init_app(app: Flask) -> None:
    app.before_request(hold_guard)
    app.teardown_request(release_guard)


@endpoint(v2, "GET", "/maintenance", summary="Whether maintenance mode refuses changes now, why and since when",
          tag=TAG, response=MaintenanceStatus)
def maintenance_status() -> Response:
    with authenticated() as (conn, _):
        return json_response(maintenance.status(conn))
