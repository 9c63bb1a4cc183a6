"""How a console page runs: authenticate from the cookie, open one transaction, report form errors."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

import psycopg
from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from appliance import buildinfo, maintenance
from appliance.auth.rbac import Action, Resource, ResourceType, Subject, is_allowed
from appliance.auth.web import current_auth, database
from appliance.db.database import DatabaseUnavailable
from appliance.errors import RequestError, Throttled, Unauthorized
from appliance.sdk.releases import MaintenanceStatus

View = Callable[..., Any]


def safe_next(target: str | None) -> str:
    """Only same-site paths are followed after login, never another host."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("console.dashboard")


def to_login(reason: str = "") -> Response:
    if reason:
        flash(reason, "error")
    return redirect(url_for("console.login", next=request.full_path.rstrip("?")))


def page(back: str | None = None) -> Callable[[View], View]:
    """Wrap a view that needs a logged-in user: it gets (conn, subject, **route args).

    When `back` names an endpoint, a refused form (bad input, conflict, forbidden) rolls back,
    flashes the reason and returns there instead of showing an error page.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def run(**kwargs: Any) -> Any:
            try:
                with database().transaction() as conn:
                    try:
                        auth = current_auth(conn)
                    except Unauthorized as err:
                        return to_login(err.message)
                    if auth is None:
                        return to_login()
                    g.subject = auth.subject
                    return view(conn, auth.subject, **kwargs)
            except RequestError as err:
                if back is None or isinstance(err, (Unauthorized, Throttled)):
                    raise
                flash(err.message, "error")
                return redirect(url_for(back, **request.view_args or {}))

        return run

    return decorate


def can(action: str, resource_type: str) -> bool:
    subject: Subject | None = g.get("subject")
    return subject is not None and is_allowed(subject, Action(action), Resource(ResourceType(resource_type)))


def render(template: str, status: int = 200, /, **context: Any) -> tuple[str, int]:
    return render_template(template, can=can, subject=g.get("subject"), maintenance=_maintenance(),
                           version=buildinfo.version(), **context), status


def _maintenance() -> MaintenanceStatus | None:
    """Maintenance mode when it is on, for the banner every page shows; None when off or unknown."""
    state: MaintenanceStatus | None = g.get("maintenance")
    if state is None:
        try:
            with database().reading(timeout=2) as conn:
                state = maintenance.status(conn)
        except (DatabaseUnavailable, psycopg.Error):
            return None
    return state if state.active else None

