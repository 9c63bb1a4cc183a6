"""Password login: throttle, verify, issue a session; failures are recorded even when refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from appliance.audit.record import RequestInfo, record
from appliance.auth import apikeys, passwords, throttle, tokens
from appliance.auth.rbac import Subject
from appliance.auth.users import User, find_user_for_login
from appliance.db.database import Connection, Database
from appliance.errors import RequestError, Throttled, Unauthorized

T = TypeVar("T")
_BAD_CREDENTIALS = Unauthorized("Incorrect username/email or password.",
                                "Check both and try again; repeated failures are throttled.")


def log_in(db: Database, login: str, password: str, *, lifetime: timedelta,
           info: RequestInfo) -> tuple[str, User]:
    """Return (session token, user). Refusals commit their audit row and failure count first."""
    return _verified(db, login, password, info,
                     lambda conn, user: (apikeys.create_session(conn, user, lifetime, info), user))


def check_password(db: Database, login: str, password: str, info: RequestInfo) -> User:
    """The active account whose password this is, under the same throttle as a login; no session.

    For clients that send a password with each exchange (a registry login's Basic credentials).
    """
    return _verified(db, login, password, info, lambda _, user: user)


def _verified(db: Database, login: str, password: str, info: RequestInfo,
              then: Callable[[Connection, User], T]) -> T:
    """Throttle, verify, then call `then` in the transaction that withdraws the counted failure."""
    user, attempt = _begin(db, login, info)
    # No transaction is open while argon2 runs (a fifth of a second): no lock or connection waits on it.
    is_correct = passwords.is_password_correct(user.hashed_password if user else None, password)
    refusal: RequestError = _BAD_CREDENTIALS
    with db.transaction() as conn:
        current = find_user_for_login(conn, login)
        # Still the password just verified: a change in between must not let the old one in.
        if user and current and is_correct and current.hashed_password == user.hashed_password:
            if current.status == "active":
                throttle.succeed(conn, attempt)
                return then(conn, current)
            throttle.withdraw(conn, attempt)
            refusal = Unauthorized("This account is suspended.", apikeys.SUSPENDED_HINT)
        _record_refusal(conn, user, login, refusal, info)
    raise refusal


def _begin(db: Database, login: str, info: RequestInfo) -> tuple[User | None, throttle.Attempt]:
    """Find the account and count this attempt as failed, committed so that parallel guesses see it."""
    with db.transaction() as conn:
        user = find_user_for_login(conn, login)
        # Count failures per account when it exists, so username and email share one budget.
        account = str(user.id) if user else login
        try:
            return user, throttle.begin_attempt(conn, account=account, address=info.ip)
        except Throttled as err:
            refusal = err
            _record_refusal(conn, user, login, err, info)
    raise refusal


def _record_refusal(conn: Connection, user: User | None, login: str, refusal: RequestError,
                    info: RequestInfo) -> None:
    record(conn, actor=None, actor_id=user.id if user else None,
           actor_name=user.username if user else login, action="login",
           resource_type="api_key", status=refusal.status, info=info)


def authenticate_basic(db: Database, login: str, secret: str, info: RequestInfo) -> Subject:
    """Basic credentials: a username (or email) with an API token of that account, or its password."""
    if tokens.parse_token(secret) is None:
        return check_password(db, login, secret, info).subject()
    with db.reading() as conn:
        found = apikeys.authenticate(conn, secret)
    if login.lower() not in (found.user.username.lower(), found.user.email.lower()):
        raise Unauthorized(f"This API token does not belong to {login!r}.",
                           "Log in with the username of the account that created the token.")
    return found.subject
