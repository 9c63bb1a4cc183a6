"""The Flask application factory: the API and the console, served by waitress or gunicorn."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Request, Response, g, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from appliance import api, console
from appliance.api.blueprints import root, v2
from appliance.api.errors import api_error_response, is_api_request
from appliance.api.guard import refuse_unsafe_request
from appliance.api.terraform import terraform
from appliance.auth import web
from appliance.config import ServerConfig
from appliance.console.errors import console_error_response
from appliance.console.upgrades import SpoolingRequest, spool_upload
from appliance.db.database import Database
from appliance.db.site_secrets import site_secret
from appliance.metrics import requests as metrics_requests
from appliance.pki.ca import CertificateAuthority

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("appliance.http")

# Everything the console needs is served by the app itself: no other origin, no inline code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Added to every response that does not set its own.
_SECURE_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
_NO_STORE = ("Cache-Control", "no-store")  # except under these prefixes:
_CACHEABLE_PREFIXES = ("/static/", "/tf/mirror/", "/v1/providers/")
_HSTS = ("Strict-Transport-Security", "max-age=31536000")  # over HTTPS only


class SecureHeaders:
    """WSGI middleware adding the security headers a response lacks, on every response.

    Working on start_response's plain list, once, costs a fraction of setting them through
    werkzeug's validated Headers, which a response copies again on the way out.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        defaults = [*_SECURE_HEADERS]
        if not environ.get("PATH_INFO", "").startswith(_CACHEABLE_PREFIXES):
            defaults.append(_NO_STORE)
        if environ.get("wsgi.url_scheme") in ("https", "wss"):  # as request.is_secure
            defaults.append(_HSTS)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            headers.extend(pair for pair in defaults if pair[0].lower() not in present)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


class FrontHop:
    """WSGI middleware: take back what the embedded front appended to X-Forwarded-For/-Proto/-Host.

    The front reaches waitress over a unix socket, so the app's REMOTE_ADDR would name no client.
    The front appends the peer it saw to each header; moving the last entry back into REMOTE_ADDR
    and the URL scheme leaves the app exactly what gunicorn shows it, peer and client's headers,
    and the same ProxyFix(proxy_trusted_hops) then decides as it does there. Only the front can
    reach the socket, so the last entry is always its own.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        for header, target in _FRONT_HEADERS:
            earlier, _, own = environ.get(header, "").rpartition(",")
            if earlier.strip():
                environ[header] = earlier.strip()
            else:
                environ.pop(header, None)
            if target and own.strip():
                environ[target] = own.strip()
        return self.app(environ, start_response)


# What the front appends (gateway/proxy.py), and where a direct server would have put it.
_FRONT_HEADERS = (("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"), ("HTTP_X_FORWARDED_PROTO", "wsgi.url_scheme"),
                  ("HTTP_X_FORWARDED_HOST", ""))  # the front passes Host through as it came


class ApplianceFlask(Flask):
    """Flask, asking once per hook or view whether it is a coroutine function.

    Flask asks inspect.iscoroutinefunction on every call of every hook and view (thirteen times
    for one GET), and the answer never changes; asking once saves a few microseconds a request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_functions: set[Callable[..., Any]] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if func in self._plain_functions:
            return func
        wrapped = super().ensure_sync(func)
        if wrapped is func:
            self._plain_functions.add(func)
        return wrapped


class CsrfCookieSession(SecureCookieSessionInterface):
    """Flask's signed cookie session (it holds only the console's CSRF token), opened lazily.

    A request without the cookie, such as an API call with a Bearer token, gets an empty session
    without building a signer, and an untouched empty session writes nothing back.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and ("HTTP_COOKIE" not in request.environ
                               or not request.cookies.get(self.get_cookie_name(app))):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if session or session.accessed or session.modified:
            super().save_session(app, session, response)


def create_app(config: ServerConfig, db: Database, *, behind_front: bool = False) -> Flask:
    """The app; `behind_front` when the embedded front (gateway/front.py) proxies to it over a unix socket."""
    app = ApplianceFlask("appliance", static_folder=None, template_folder=None)
    app.request_class = SpoolingRequest  # a bundle upload streams into the upgrade spool (docs/adr/0039)
    # Services reach the config and pool through the app, one of each per process.
    app.extensions["appliance.config"] = config
    app.extensions["appliance.db"] = db
    app.extensions["appliance.ca"] = CertificateAuthority.for_site(config)
    _configure_flask(app, config, db)
    app.wsgi_app = SecureHeaders(app.wsgi_app)  # type: ignore[method-assign]
    if config.proxy_trusted_hops:
        # Only trust X-Forwarded-* from the site's proxies in front of us (nginx), never from clients.
        hops = config.proxy_trusted_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    if behind_front:
        app.wsgi_app = FrontHop(app.wsgi_app)  # type: ignore[method-assign]  # outermost: runs first
    metrics_requests.init_app(app)  # first before_request: every request is counted, even one answered early
    web.init_app(app)
    # First: a bundle upload is authorized before its body is read, then streamed to disk under its own cap.
    app.before_request(spool_upload)
    # Before CSRF and every view: a control character in a path, query or form is a 400, never a 500.
    app.before_request(refuse_unsafe_request)
    # Console forms carry CSRF tokens; the API checks them itself, only for cookie-authenticated changes.
    csrf = CSRFProtect(app)
    csrf.exempt(v2)
    csrf.exempt(root)
    csrf.exempt(terraform)
    api.init_app(app)
    console.init_app(app)
    app.after_request(_request_id_header)
    app.after_request(_log_request)
    app.register_error_handler(Exception, _handle_error)
    return app


def freeze_startup_heap() -> None:
    """Leave what a server process loaded at start (modules, routes, models) out of every later GC pass.

    Call once, where a process that serves the app has built it (never in create_app: tests build
    many apps in one process). The console loads over a hundred thousand such objects, which
    the collector otherwise walks again and again while requests allocate: it cost a fifth of a
    worker's CPU per API request under gunicorn (benchmarks/api_throughput.py).
    """
    gc.freeze()


def _configure_flask(app: Flask, config: ServerConfig, db: Database) -> None:
    app.session_interface = CsrfCookieSession()
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


def _request_id_header(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
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
