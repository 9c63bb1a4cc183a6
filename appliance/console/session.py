"""First-user setup, login, logout and the dashboard."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.auth import apikeys, users
from appliance.auth.login import log_in
from appliance.auth.rbac import Subject
from appliance.auth.web import (
    clear_session_cookie,
    current_auth,
    database,
    request_info,
    server_config,
    set_session_cookie,
)
from appliance.console.blueprint import bp
from appliance.console.pages import page, render, safe_next
from appliance.db.database import Connection
from appliance.errors import RequestError, Unauthorized


def _form(*names: str) -> dict[str, str]:
    return {name: request.form.get(name, "") for name in names}


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> Any:
    with database().transaction() as conn:
        if users.has_any_user(conn):
            flash("Setup is already done. Log in with an existing account.", "info")
            return redirect(url_for("console.login"))
    if request.method != "POST":
        return render("setup.html", form={"token": request.args.get("token", "")},
                      needs_token=server_config().first_user_requires_setup_token)
    form = _form("username", "email", "name", "password", "password_confirm", "token")
    if form["password"] != form["password_confirm"]:
        return render("setup.html", 400, form=form, error="The two passwords differ.",
                      error_field="password_confirm", needs_token=server_config().first_user_requires_setup_token)
    new = users.NewUser(form["username"].strip(), form["email"].strip(), form["password"],
                        form["name"].strip())
    try:
        with database().transaction() as conn:
            user = users.create_first_user(
                conn, new, request_info(), setup_token=form["token"] or None,
                requires_setup_token=server_config().first_user_requires_setup_token)
            token = apikeys.create_session(conn, user, server_config().session_lifetime, request_info())
    except RequestError as err:
        return render("setup.html", err.status, form=form, error=err.message, error_field=err.field,
                      hint=err.detail, needs_token=server_config().first_user_requires_setup_token)
    response = redirect(url_for("console.dashboard"))
    set_session_cookie(response, token)
    flash(f"Welcome, {user.username}. You are the owner of this appliance.", "success")
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method != "POST":
        with database().transaction() as conn:
            if not users.has_any_user(conn):
                return redirect(url_for("console.setup"))
        return render("login.html", login="", next=request.args.get("next", ""))
    login_name = request.form.get("login", "").strip()
    target = safe_next(request.form.get("next"))
    try:
        token, _ = log_in(database(), login_name, request.form.get("password", ""),
                             lifetime=server_config().session_lifetime, info=request_info())
    except RequestError as err:
        return render("login.html", err.status, login=login_name, next=target, error=err.message)
    response = redirect(target)
    set_session_cookie(response, token)
    return response


@bp.post("/logout")
def logout() -> Response:
    response = redirect(url_for("console.login"))
    with database().transaction() as conn:
        try:
            auth = current_auth(conn)
        except Unauthorized:
            auth = None
        if auth is not None:
            apikeys.end_session(conn, auth.subject, request_info())
    clear_session_cookie(response)
    flash("You are logged out.", "info")
    return response


@bp.get("/")
@page()
def dashboard(conn: Connection, subject: Subject) -> Any:
    me = users.get_user(conn, subject, "me")
    return render("dashboard.html", me=me, access_url=server_config().access_url)
