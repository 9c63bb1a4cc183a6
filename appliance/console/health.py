"""The Health page: every section of the health report with its findings; owners dismiss a finding's code."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.auth.web import database, request_info, server_config
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.errors import InvalidInput
from appliance.health import dismissals
from appliance.health.report import run_report


@bp.get("/health")
@page()
def health(conn: Connection, subject: Subject) -> Any:
    authorize(subject, Action.READ, Resource(ResourceType.HEALTH))
    return render("health.html", report=run_report(server_config(), database()))


@bp.post("/health/dismiss")
@page(back="console.health")
def health_dismiss(conn: Connection, subject: Subject) -> Response:
    code = request.form.get("code", "")
    codes = set(dismissals.dismissed_codes(conn))
    if request.form.get("undo"):
        codes.discard(code)
    elif code:
        codes.add(code)
    else:
        raise InvalidInput("No code to dismiss.", "Use the Dismiss button beside a finding.")
    dismissals.save(conn, subject, sorted(codes), request_info())
    flash(f"{code} {'counts again' if request.form.get('undo') else 'dismissed: it is still shown'}.", "success")
    return redirect(url_for("console.health"))
