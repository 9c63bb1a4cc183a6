"""Sessions and API tokens: issue, authenticate, list, revoke. Only sha256(secret) is stored."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import errors as pg_errors

from appliance.audit.record import RequestInfo, record
from appliance.auth import revocations, tokens
from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.auth.users import User, get_user, touch_last_seen
from appliance.db.database import Connection, Row, kept_cursor
from appliance.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized

# Accounts holding a site role are the owners' to manage (docs/adr/0015).
SUSPENDED_HINT = "Ask a user admin to activate it (an owner, if the account holds a site role)."

SESSION = "password"
TOKEN = "token"  # noqa: S105 -- a login_type name, not a secret
DEFAULT_TOKEN_LIFETIME = timedelta(days=30)
LIFETIME_HINT = "Give a duration such as 30d, 12h, 15m or a number of seconds, up to the site's max_token_lifetime."
# A token's scope (Coder's api_keys.scope): "all" opens every route; "metrics" opens GET /api/v2/metrics
# only, so the credential a Prometheus server holds can read nothing else (docs/adr/0042).
ALL_SCOPE, METRICS_SCOPE = "all", "metrics"
SCOPES = (ALL_SCOPE, METRICS_SCOPE)
TOKEN_NAME_HINT = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"  # noqa: S105 -- help text
_KEY_COLUMNS = ("id, user_id, login_type, token_name, scope, lifetime_seconds, created_at, "
                "expires_at, last_used_at, revoked_at")


@dataclass(frozen=True)
class ApiKey:
    id: str
    user_id: Any
    login_type: str
    token_name: str | None
    scope: str
    lifetime_seconds: int
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> ApiKey:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})



def _insert_key(conn: Connection, user_id: Any, login_type: str, lifetime: timedelta,
                ip: str | None, name: str | None = None, scope: str = ALL_SCOPE) -> tuple[str, ApiKey]:
    parts = tokens.new_token()
    row = conn.execute(
        f"INSERT INTO api_keys (id, hashed_secret, user_id, login_type, token_name,"  # noqa: S608 -- constant column list
        f" lifetime_seconds, expires_at, ip_address, scope)"
        f" VALUES (%s, %s, %s, %s, %s, %s, now() + %s, %s, %s) RETURNING {_KEY_COLUMNS}",
        (parts.key_id, parts.hashed_secret, user_id, login_type, name,
         int(lifetime.total_seconds()), lifetime, ip, scope),
    ).fetchone()
    assert row is not None
    return str(parts), ApiKey.from_row(row)


def create_session(conn: Connection, user: User, lifetime: timedelta, info: RequestInfo) -> str:
    token, key = _insert_key(conn, user.id, SESSION, lifetime, info.ip)
    record(conn, actor=user.subject(key.id), action="login", resource_type="api_key",
           resource_id=key.id, target=user.username, status=201, info=info)
    return token


@dataclass(frozen=True)
class Authenticated:
    subject: Subject
    key: ApiKey
    user: User  # as loaded with the key, so "me" needs no second query


# One round trip per request: the key, its user and the use-stamp flags in one statement.
_KEY_FIELDS = ", ".join(f"k.{c.strip()}" for c in _KEY_COLUMNS.split(","))
_USER_FIELDS = ", ".join(f"u.{name} AS u_{name}" for name in User.__dataclass_fields__)
_AUTH_QUERY = (
    f"SELECT {_KEY_FIELDS}, {_USER_FIELDS}, k.hashed_secret,"  # noqa: S608 -- constant column lists
    " k.expires_at <= now() AS is_expired, u.deleted_at AS u_deleted_at,"
    " coalesce(k.last_used_at < now() - interval '1 minute', true) AS key_is_stale,"
    " coalesce(u.last_seen_at < now() - interval '1 minute', true) AS user_is_stale"
    " FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = %s"
)


def authenticate(conn: Connection, presented: str, scope: str | None = ALL_SCOPE) -> Authenticated:
    """Resolve a presented token to its user, or raise Unauthorized saying why.

    Every call reads the key from the database, so a revocation holds from the next request on.
    `scope` is what the caller's route needs (Forbidden for another); None: the caller checks it.
    """
    parts = tokens.parse_token(presented)
    if parts is None:
        raise Unauthorized("Invalid session token format.",
                           "Log in again ('appliance login URL') to get a new token.")
    row = kept_cursor(conn, _AUTH_QUERY).execute(_AUTH_QUERY, (parts.key_id,)).fetchone()
    if row is None or not tokens.is_secret_matching(parts, row["hashed_secret"]):
        raise Unauthorized("Invalid session token.", "Log in again to get a new token.")
    if row["revoked_at"] is not None or row["u_deleted_at"] is not None:
        raise Unauthorized("This session token was revoked.", "Log in again to get a new token.")
    if row["is_expired"]:
        raise Unauthorized(f"This session token expired at {row['expires_at'].isoformat()}.",
                           "Log in again, or create a new API token.")
    if row["u_status"] != "active":
        raise Unauthorized("This account is suspended.", SUSPENDED_HINT)
    user = _note_use(conn, row, User(**{name: row[f"u_{name}"] for name in User.__dataclass_fields__}))
    found = Authenticated(user.subject(row["id"]), ApiKey.from_row(row), user)
    return found if scope is None else require_scope(found, scope)


def require_scope(auth: Authenticated, scope: str) -> Authenticated:
    """`auth` if its key's scope is the one the route needs, else Forbidden with the way out."""
    if auth.key.scope == scope:
        return auth
    if scope == METRICS_SCOPE:
        raise Forbidden(f"Metrics need a token of scope '{METRICS_SCOPE}'; this one has scope '{auth.key.scope}'.",
                        f"Create one for your scraper: 'appliance tokens create prometheus --scope {METRICS_SCOPE}' "
                        "(as an owner or auditor), and give it to Prometheus as its bearer token.")
    raise Forbidden(f"This token has scope '{auth.key.scope}': it opens only GET /api/v2/metrics.",
                    "Use a session ('appliance login') or a token of scope 'all' for anything else.")


def _note_use(conn: Connection, row: Row, user: User) -> User:
    """Record use at most once a minute; a session's expiry slides forward as it is used.

    The staleness flags come with the authentication query, so most requests write nothing.
    Returns the user with its new last-seen time when that was stamped.
    """
    if row["user_is_stale"]:
        seen = touch_last_seen(conn, user.id)
        user = replace(user, last_seen_at=seen or user.last_seen_at)
    if not row["key_is_stale"]:
        return user
    slide = row["login_type"] == SESSION
    conn.execute(
        "UPDATE api_keys SET last_used_at = now(),"
        " expires_at = CASE WHEN %s THEN now() + make_interval(secs => lifetime_seconds)"
        "                   ELSE expires_at END"
        " WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        (slide, row["id"]),
    )
    return user


def end_session(conn: Connection, subject: Subject, info: RequestInfo) -> None:
    conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
                 (subject.api_key_id,))
    revocations.changed(conn)
    record(conn, actor=subject, action="logout", resource_type="api_key",
           resource_id=subject.api_key_id, target=subject.username, info=info)


def create_token(conn: Connection, actor: Subject, owner_ref: str, *, name: str,
                 lifetime: timedelta | None, max_lifetime: timedelta,
                 info: RequestInfo, scope: str = ALL_SCOPE) -> tuple[str, ApiKey]:
    owner = get_user(conn, actor, owner_ref)
    authorize(actor, Action.CREATE, Resource(ResourceType.API_KEY, owner_id=owner.id))
    lifetime = lifetime or min(DEFAULT_TOKEN_LIFETIME, max_lifetime)
    if lifetime > max_lifetime:
        raise InvalidInput(
            f"Token lifetime {_days(lifetime)} exceeds the maximum {_days(max_lifetime)}.",
            "Ask for a shorter lifetime, or raise max_token_lifetime in the server config.",
            field="lifetime")
    try:
        with conn.transaction():
            token, key = _insert_key(conn, owner.id, TOKEN, lifetime, info.ip, name, scope)
    except pg_errors.CheckViolation as err:
        raise InvalidInput(f"Invalid token name {name!r}: use {TOKEN_NAME_HINT}.", field="token_name") from err
    except pg_errors.UniqueViolation as err:
        raise Conflict(f"{owner.username} already has a token named {name!r}.",
                       "Revoke it first, or choose another name.", field="token_name") from err
    record(conn, actor=actor, action="create", resource_type="api_key", resource_id=key.id,
           target=name, diff={"token_name": {"old": None, "new": name, "secret": False},
                              "scope": {"old": None, "new": key.scope, "secret": False},
                              "expires_at": {"old": None, "new": key.expires_at.isoformat(),
                                             "secret": False}},
           status=201, info=info)
    return token, key


def _days(value: timedelta) -> str:
    return f"{value.days}d" if value.days and not value.seconds else f"{int(value.total_seconds())}s"


def list_tokens(conn: Connection, actor: Subject, owner_ref: str) -> list[ApiKey]:
    owner = get_user(conn, actor, owner_ref)
    authorize(actor, Action.READ, Resource(ResourceType.API_KEY, owner_id=owner.id))
    rows = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE user_id = %s AND login_type = 'token'"  # noqa: S608 -- constant column list
        " AND revoked_at IS NULL AND expires_at > now() ORDER BY created_at DESC",
        (owner.id,),
    ).fetchall()
    return [ApiKey.from_row(r) for r in rows]


def revoke_token(conn: Connection, actor: Subject, owner_ref: str, key_id: str, info: RequestInfo) -> None:
    owner = get_user(conn, actor, owner_ref)
    authorize(actor, Action.DELETE, Resource(ResourceType.API_KEY, owner_id=owner.id))
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND user_id = %s"
        " AND login_type = 'token' AND revoked_at IS NULL RETURNING token_name",
        (key_id, owner.id),
    ).fetchone()
    revocations.changed(conn)
    if row is None:
        raise NotFound(f"No active token {key_id!r} for {owner.username}.",
                       "List tokens with 'appliance tokens list'.")
    record(conn, actor=actor, action="delete", resource_type="api_key", resource_id=key_id,
           target=row["token_name"] or "", info=info)
