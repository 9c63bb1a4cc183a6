"""Console failures as pages a person can act on; the cause goes to the log, never the browser."""

from __future__ import annotations

import logging

from flask import g, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from appliance.auth.web import current_auth, database
from appliance.console.pages import render, to_login
from appliance.db.database import DatabaseUnavailable
from appliance.db.refusals import refused_value
from appliance.errors import RequestError, Unauthorized, UnderMaintenance

log = logging.getLogger(__name__)


def _page(status: int, title: str, message: str, hint: str = "") -> Response:
    _identify_viewer()
    html, _ = render("error.html", status, title=title, message=message, hint=hint,
                     request_id=g.get("request_id", ""))
    return Response(html, status=status, mimetype="text/html")


def _identify_viewer() -> None:
    """Best effort: show the logged-in user's nav on error pages too, if the database answers."""
    if "subject" in g:
        return
    try:
        with database().transaction(timeout=2) as conn:
            auth = current_auth(conn)
    except (RequestError, DatabaseUnavailable):
        return
    if auth is not None:
        g.subject = auth.subject


def console_error_response(err: Exception) -> Response:
    err = refused_value(err) or err
    if isinstance(err, Unauthorized):
        return to_login(err.message)
    if isinstance(err, CSRFError):
        return _page(400, "Form expired", "This form expired or did not come from this console.",
                     "Go back, reload the page and submit it again.")
    if isinstance(err, UnderMaintenance):
        return _page(503, "Maintenance in progress", err.message,
                     "Nothing was changed. Pages still open; submit this form again once maintenance ends.")
    if isinstance(err, RequestError):
        return _page(err.status, "Request refused", err.message, err.detail)
    if isinstance(err, HTTPException):
        if err.code == 404:
            return _page(404, "Not found", f"There is no page at {request.path}.")
        return _page(err.code or 500, err.name, err.description or "")
    if isinstance(err, DatabaseUnavailable):
        log.error("database_unavailable", extra={"path": request.path})
        return _page(503, "Database unavailable", err.message, err.hint)
    log.exception("page_failed", extra={"path": request.path, "request_id": g.get("request_id")},
                  exc_info=err)
    return _page(500, "Something went wrong", "The server could not show this page.",
                 "The server log has the cause under this request id.")
