"""Who is making this HTTP request: token from the Authorization header or the session cookie.

Shared by the API and the console so both authenticate, throttle and audit the same way.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Literal

from flask import Flask, current_app, g, request
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.wrappers import Response

from appliance.audit.record import RequestInfo
from appliance.auth import revocations
from appliance.auth.apikeys import ALL_SCOPE, Authenticated, authenticate, require_scope
from appliance.auth.key_cache import KeyCache
from appliance.auth.rbac import Subject
from appliance.config import ServerConfig
from appliance.db.database import Connection, Database
from appliance.errors import Forbidden, Unauthorized

SESSION_COOKIE = "appliance_session_token"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TokenSource = Literal["header", "cookie"]


def database() -> Database:
    db: Database = current_app.extensions["appliance.db"]
    return db


def server_config() -> ServerConfig:
    config: ServerConfig = current_app.extensions["appliance.config"]
    return config


def request_info() -> RequestInfo:
    return RequestInfo(ip=request.remote_addr, user_agent=request.user_agent.string,
                       request_id=g.get("request_id", ""))


def presented_token() -> tuple[str, TokenSource] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "header"
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, "cookie") if cookie else None


def current_auth(conn: Connection, scope: str = ALL_SCOPE) -> Authenticated | None:
    """The request's authentication, resolved once; raises Unauthorized for a bad token.

    Forbidden when the token's scope is not `scope`: only the metrics scrape asks for another.
    """
    if "auth" not in g:
        presented = presented_token()
        g.auth = _key_cache().authenticate(presented[0], lambda: authenticate(conn, presented[0], scope=None)) \
            if presented else None
        g.auth_source = presented[1] if presented else None
    auth: Authenticated | None = g.auth
    return require_scope(auth, scope) if auth is not None else None


def cached_auth() -> Authenticated | None:
    """The request's authentication when this process has its token cached; None means ask PostgreSQL."""
    presented = presented_token()
    auth = _key_cache().lookup(presented[0]) if presented else None
    if auth is not None and presented is not None:
        g.auth, g.auth_source = auth, presented[1]
        require_scope(auth, ALL_SCOPE)
    return auth


def require_subject(conn: Connection) -> Subject:
    auth = current_auth(conn)
    if auth is None:
        raise Unauthorized("You are not logged in.",
                           "Send 'Authorization: Bearer <token>' or log in at /login.")
    if g.auth_source == "cookie" and request.method not in _SAFE_METHODS:
        check_csrf_header()
    return auth.subject


def check_csrf_header() -> None:
    """A cookie-authenticated change must echo the console's CSRF token in a header."""
    try:
        validate_csrf(request.headers.get(CSRF_HEADER, ""))
    except CSRFError as err:
        raise Forbidden(f"CSRF check failed: {err.description}",
                        f"Send the token from the console page in the {CSRF_HEADER} header, "
                        "or authenticate with a Bearer token.") from err
    except Exception as err:  # flask_wtf raises ValidationError, which subclasses ValueError
        raise Forbidden(f"CSRF check failed: {err}",
                        f"Send the token from the console page in the {CSRF_HEADER} header, "
                        "or authenticate with a Bearer token.") from err


def set_session_cookie(response: Response, token: str) -> None:
    lifetime = server_config().session_lifetime
    response.set_cookie(SESSION_COOKIE, token, max_age=int(lifetime.total_seconds()),
                        httponly=True, samesite="Lax", secure=request.is_secure, path="/")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax",
                           secure=request.is_secure)


def assign_request_id() -> None:
    g.started = time.monotonic()
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if incoming.isalnum() and len(incoming) <= 64 else _new_request_id()


def _new_request_id() -> str:
    # Unique enough to find a request in the logs, and no secret: the process's PRNG (reseeded
    # in each forked worker) saves the getrandom() system call, and a GIL release, per request.
    return f"{random.getrandbits(64):016x}"


def _key_cache() -> KeyCache:
    cache: KeyCache = current_app.extensions["appliance.key_cache"]
    return cache


def revocation_epoch_path(config: ServerConfig) -> Path:
    """Shared by every worker of one console: its systemd RuntimeDirectory (a tmpfs), else the data dir."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / "auth-epoch" if runtime else config.data_dir / "auth-epoch"


def init_app(app: Flask) -> None:
    epoch = revocations.RevocationEpoch(revocation_epoch_path(app.extensions["appliance.config"]))
    revocations.register(epoch)
    app.extensions["appliance.key_cache"] = KeyCache(epoch)
    app.before_request(assign_request_id)
