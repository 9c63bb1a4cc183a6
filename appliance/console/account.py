"""The account page: profile, password change, API tokens (each shown once) and the SSH key for Git."""

from __future__ import annotations

import secrets
from typing import Any

from flask import flash, redirect, request, session, url_for
from werkzeug.wrappers import Response

from appliance.auth import apikeys, ssh_keys, users
from appliance.auth.rbac import Subject
from appliance.auth.web import request_info, server_config
from appliance.config import parse_duration
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.errors import InvalidInput

_USED_NONCES = "used_token_form_nonces"
TOKEN_LIFETIMES = (("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"),
                   ("365d", "1 year"))


def _account_page(conn: Connection, subject: Subject, status: int = 200, **extra: Any) -> Any:
    me = users.get_user(conn, subject, "me")
    tokens = apikeys.list_tokens(conn, subject, "me")
    lifetimes = [(v, label) for v, label in TOKEN_LIFETIMES
                 if parse_duration(v) <= server_config().max_token_lifetime]
    return render("account.html", status, me=me, tokens=tokens, lifetimes=lifetimes,
                  git_ssh_key=ssh_keys.get_key(conn, subject, "me"), form_nonce=secrets.token_urlsafe(16), **extra)


def _is_resubmission(nonce: str) -> bool:
    """True when this create-token form was already submitted (a browser refresh re-posts it)."""
    return bool(nonce) and nonce in session.get(_USED_NONCES, [])


def _remember_submission(nonce: str) -> None:
    session[_USED_NONCES] = [*session.get(_USED_NONCES, []), nonce][-20:]


@bp.get("/account")
@page()
def account(conn: Connection, subject: Subject) -> Any:
    return _account_page(conn, subject)


@bp.post("/account/tokens")
@page(back="console.account")
def create_token(conn: Connection, subject: Subject) -> Any:
    nonce = request.form.get("form_nonce", "")
    if _is_resubmission(nonce):
        flash("That token was already created and its value shown once. If you did not copy it, "
              "revoke it and create a new one.", "info")
        return redirect(url_for("console.account"))
    name = request.form.get("token_name", "").strip()
    try:
        lifetime = parse_duration(request.form.get("lifetime", "30d"))
    except ValueError as err:
        raise InvalidInput(f"Invalid lifetime: {err}.", apikeys.LIFETIME_HINT, field="lifetime") from err
    token, key = apikeys.create_token(conn, subject, "me", name=name, lifetime=lifetime,
                                      max_lifetime=server_config().max_token_lifetime,
                                      info=request_info())
    _remember_submission(nonce)
    # Rendered directly, never redirected: the secret must not travel through a cookie or a URL.
    return _account_page(conn, subject, 201, new_token=token, new_key=key)


@bp.post("/account/tokens/<key_id>/revoke")
@page(back="console.account")
def revoke_token(conn: Connection, subject: Subject, key_id: str) -> Response:
    apikeys.revoke_token(conn, subject, "me", key_id, request_info())
    flash(f"Token {key_id} revoked.", "success")
    return redirect(url_for("console.account"))


@bp.post("/account/password")
@page(back="console.account")
def change_password(conn: Connection, subject: Subject) -> Response:
    new, confirm = request.form.get("password", ""), request.form.get("password_confirm", "")
    if new != confirm:
        raise InvalidInput("The two new passwords differ.", field="password_confirm")
    users.change_password(conn, subject, "me", old_password=request.form.get("old_password", ""),
                          new_password=new, info=request_info())
    flash("Password changed. Your other sessions were logged out.", "success")
    return redirect(url_for("console.account"))


@bp.post("/account/gitsshkey/regenerate")
@page(back="console.account")
def regenerate_git_ssh_key(conn: Connection, subject: Subject) -> Response:
    ssh_keys.regenerate(conn, subject, "me", request_info())
    flash("A new SSH key was made. Add its public key to your Git server; the old one no longer works "
          "in new workspace builds.", "success")
    return redirect(url_for("console.account"))
