"""Who is asking, from the same Bearer token or session cookie the API reads, checked in a DB thread."""

from __future__ import annotations

from aiohttp import web

from appliance.auth.apikeys import authenticate
from appliance.auth.rbac import Subject
from appliance.auth.web import SESSION_COOKIE
from appliance.db.database import Connection
from appliance.errors import Unauthorized


def presented_token(request: web.Request) -> str | None:
    """The Bearer token, else the console's session cookie; the same order as appliance.auth.web."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


def require_subject(conn: Connection, token: str | None) -> Subject:
    """Runs in a DB thread. Follows are GETs, so a cookie needs no CSRF token (as in the API)."""
    if token is None:
        raise Unauthorized("You are not logged in.", "Send 'Authorization: Bearer <token>' or log in at /login.")
    return authenticate(conn, token).subject
