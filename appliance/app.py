"""The Flask application factory: the API and the console, served by waitress or gunicorn."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from appliance import api, console
from appliance.api.blueprints import root, v2
from appliance.api.errors import api_error_response, is_api_request
from appliance.api.terraform import terraform
from appliance.auth import web
from appliance.config import ServerConfig
from appliance.console.errors import console_error_response
from appliance.db.database import Database
from appliance.db.site_secrets import site_secret
from appliance.pki.ca import CertificateAuthority

log = logging.getLogger("appliance.http")

# Everything the console needs is served by the app itself: no other origin, no inline code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def create_app(config: ServerConfig, db: Database, *, front_hops: int = 0) -> Flask:
    """The app; `front_hops` counts proxies of our own in front of it beyond the configured ones."""
    app = Flask("appliance", static_folder=None, template_folder=None)
    # Services reach the config and pool through the app, one of each per process.
    app.extensions["appliance.config"] = config
    app.extensions["appliance.db"] = db
    app.extensions["appliance.ca"] = CertificateAuthority.for_site(config)
    _configure_flask(app, config, db)
    if config.proxy_trusted_hops + front_hops:
        # Only trust X-Forwarded-* from the proxies in front of us (nginx, the embedded front), never
        # from clients.
        hops = config.proxy_trusted_hops + front_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    web.init_app(app)
    # Console forms carry CSRF tokens; the API checks them itself, only for cookie-authenticated changes.
    csrf = CSRFProtect(app)
    csrf.exempt(v2)
    csrf.exempt(root)
    csrf.exempt(terraform)
    api.init_app(app)
    console.init_app(app)
    app.after_request(_secure_headers)
    app.after_request(_log_request)
    app.register_error_handler(Exception, _handle_error)
    return app


def _configure_flask(app: Flask, config: ServerConfig, db: Database) -> None:
    app.config.update(
        SECRET_KEY=site_secret(db, "flask_secret_key"),
        # Flask's signed session cookie holds only the console's CSRF token.
        SESSION_COOKIE_NAME="appliance_csrf",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=urlsplit(config.access_url).scheme == "https",
        WTF_CSRF_TIME_LIMIT=None,  # the token is bound to the browser's session cookie instead
        WTF_CSRF_HEADERS=[web.CSRF_HEADER],
        MAX_CONTENT_LENGTH=1 << 20,
    )


def _secure_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if not request.path.startswith(("/static/", "/tf/mirror/", "/v1/providers/")):
        headers.setdefault("Cache-Control", "no-store")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    headers["X-Request-Id"] = g.get("request_id", "")
    return response


def _log_request(response: Response) -> Response:
    if log.isEnabledFor(logging.INFO):
        started = g.get("started", time.monotonic())
        log.info("http_request", extra={
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "request_id": g.get("request_id", ""), "remote": request.remote_addr})
    return response


def _handle_error(err: Exception) -> BaseResponse | HTTPException:
    if isinstance(err, HTTPException) and (err.code or 500) < 400:
        return err  # redirects raised by routing, such as a missing trailing slash
    return api_error_response(err) if is_api_request() else console_error_response(err)
