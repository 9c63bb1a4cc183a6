"""Password login: throttle, verify, issue a session; failures are recorded even when refused."""

from __future__ import annotations

from datetime import timedelta

from appliance.audit.record import RequestInfo, record
from appliance.auth import apikeys, passwords, throttle
from appliance.auth.users import User, find_user_for_login
from appliance.db.database import Database
from appliance.errors import RequestError, Throttled, Unauthorized

_BAD_CREDENTIALS = Unauthorized("Incorrect username/email or password.",
                                "Check both and try again; repeated failures are throttled.")


def log_in(db: Database, login: str, password: str, *, lifetime: timedelta,
           info: RequestInfo) -> tuple[str, User]:
    """Return (session token, user). Refusals commit their audit row and failure count first."""
    refusal: RequestError | None = None
    with db.transaction() as conn:
        user = find_user_for_login(conn, login)
        # Count failures per account when it exists, so username and email share one budget.
        account = str(user.id) if user else login
        try:
            throttle.check_login_allowed(conn, login=account, address=info.ip)
        except Throttled as err:
            refusal = err
        if refusal is None:
            hashed = user.hashed_password if user else None
            if passwords.is_password_correct(hashed, password) and user is not None:
                if user.status == "active":
                    throttle.clear_login_failures(conn, login=account)
                    return apikeys.create_session(conn, user, lifetime, info), user
                refusal = Unauthorized("This account is suspended.", "Ask a user admin to activate it.")
            else:
                throttle.record_login_failure(conn, login=account, address=info.ip)
                refusal = _BAD_CREDENTIALS
        record(conn, actor=None, actor_id=user.id if user else None,
               actor_name=user.username if user else login, action="login",
               resource_type="api_key", status=refusal.status, info=info)
    raise refusal
