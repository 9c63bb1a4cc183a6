"""User administration: list and search, create, suspend, activate, change roles, delete."""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.auth import users
from appliance.auth.rbac import ASSIGNABLE_ROLES, ROLES, Action, Subject, is_allowed
from appliance.auth.web import request_info
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.responses import user_response
from appliance.sdk.base import whole_number
from appliance.sdk.users import RoleResponse

PAGE_SIZE = 50


@bp.app_template_filter("site_roles")
def site_roles(user: users.User) -> list[RoleResponse]:
    """A user's site roles with their display names, as the API shows them."""
    return user_response(user).roles


@bp.app_template_global("may_manage")
def may_manage(user: users.User) -> bool:
    """Whether the viewer may suspend or delete this account: one holding a site role is for owners."""
    subject: Subject | None = g.get("subject")
    return subject is not None and is_allowed(subject, Action.UPDATE, user.managed)


@bp.get("/users")
@page()
def user_list(conn: Connection, subject: Subject) -> Any:
    search = request.args.get("q", "").strip()
    status = request.args.get("status", "")
    offset = whole_number(request.args.get("offset", "0")) or 0  # a page past bigint is the first page
    found, count = users.list_users(conn, subject, search=search, status=status,
                                    limit=PAGE_SIZE, offset=offset)
    return render("users.html", users=found, count=count, q=search, status_filter=status, offset=offset,
                  page_size=PAGE_SIZE, roles=[ROLES[r] for r in ASSIGNABLE_ROLES])


@bp.post("/users")
@page(back="console.user_list")
def user_create(conn: Connection, subject: Subject) -> Response:
    form = request.form
    new = users.NewUser(form.get("username", "").strip(), form.get("email", "").strip(),
                        form.get("password", ""), form.get("name", "").strip())
    user = users.create_user(conn, subject, new, request_info())
    flash(f"User {user.username} created. Give them their password through a safe channel.", "success")
    return redirect(url_for("console.user_list"))


@bp.post("/users/<user_id>/status")
@page(back="console.user_list")
def user_status(conn: Connection, subject: Subject, user_id: str) -> Response:
    wanted = "suspended" if request.form.get("action") == "suspend" else "active"
    user = users.set_status(conn, subject, user_id, wanted, request_info())
    flash(f"User {user.username} is now {user.status}.", "success")
    return redirect(url_for("console.user_list"))


@bp.post("/users/<user_id>/roles")
@page(back="console.user_list")
def user_roles(conn: Connection, subject: Subject, user_id: str) -> Response:
    user = users.set_roles(conn, subject, user_id, request.form.getlist("roles"), request_info())
    shown = ", ".join(ROLES[r].display_name for r in sorted(user.roles)) or "Member only"
    flash(f"Roles of {user.username}: {shown}.", "success")
    return redirect(url_for("console.user_list"))


@bp.post("/users/<user_id>/delete")
@page(back="console.user_list")
def user_delete(conn: Connection, subject: Subject, user_id: str) -> Response:
    user = users.get_user(conn, subject, user_id)
    users.delete_user(conn, subject, user_id, request_info())
    flash(f"User {user.username} deleted; their tokens and sessions were revoked.", "success")
    return redirect(url_for("console.user_list"))
