"""User accounts: create, look up, list, suspend, activate, change roles, delete.

Every mutation checks permission with rbac.authorize and writes its audit row in the same
transaction, so a change and its record land together or not at all.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import errors as pg_errors

from appliance.audit.record import RequestInfo, diff_fields, record
from appliance.auth import passwords, revocations, throttle
from appliance.auth.rbac import (
    ASSIGNABLE_ROLES,
    OWNER,
    Action,
    Resource,
    ResourceType,
    Subject,
    authorize,
    is_allowed,
)
from appliance.auth.setup_tokens import consume_setup_token
from appliance.db.database import Connection, Row
from appliance.errors import Conflict, CountedFailure, InvalidInput, NotFound

USERNAME_RULE = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?")  # fullmatch: no "\n" after `$`
EMAIL_RULE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_FIRST_USER_LOCK = 0x46495253  # "FIRS": serialises concurrent first-user requests
_USER_COLUMNS = ("id, username, email, name, status, roles, created_at, updated_at, "
                 "last_seen_at, hashed_password")


@dataclass(frozen=True)
class User:
    id: UUID
    username: str
    email: str
    name: str
    status: str
    roles: list[str]
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None
    hashed_password: str

    @classmethod
    def from_row(cls, row: Row) -> User:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def is_owner(self) -> bool:
        return OWNER in self.roles

    @property
    def resource(self) -> Resource:
        """The account as its holder sees it: they read it and change their own password."""
        return Resource(ResourceType.USER, owner_id=self.id, holds_site_role=bool(self.roles))

    @property
    def managed(self) -> Resource:
        """The account as an admin manages it (status, deletion, resets): no holder's rights apply."""
        return Resource(ResourceType.USER, holds_site_role=bool(self.roles))

    def subject(self, api_key_id: str = "") -> Subject:
        return Subject.of(self.id, self.username, self.roles, api_key_id)

    def audited(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("created_at", "updated_at", "last_seen_at")}


@dataclass(frozen=True)
class NewUser:
    username: str
    email: str
    password: str
    name: str = ""


def validate_new_user(new: NewUser) -> None:
    if not USERNAME_RULE.fullmatch(new.username):
        raise InvalidInput(
            f"Invalid username {new.username!r}: use 1-32 letters, digits or hyphens, "
            "starting and ending with a letter or digit.", field="username")
    if not EMAIL_RULE.fullmatch(new.email) or len(new.email) > 254:
        raise InvalidInput(f"Invalid email {new.email!r}: expected an address like name@example.org.",
                           field="email")
    if len(new.name) > 128:
        raise InvalidInput("Name is too long: use at most 128 characters.", field="name")
    passwords.check_password_policy(new.password, username=new.username, email=new.email)


def _insert(conn: Connection, new: NewUser, roles: list[str]) -> User:
    try:
        with conn.transaction():
            row = conn.execute(
                f"INSERT INTO users (username, email, name, hashed_password, roles)"  # noqa: S608 -- constant column list
                f" VALUES (%s, %s, %s, %s, %s) RETURNING {_USER_COLUMNS}",
                (new.username, new.email, new.name, passwords.hash_password(new.password), roles),
            ).fetchone()
    except pg_errors.UniqueViolation as err:
        field = "email" if "email" in str(err.diag.constraint_name) else "username"
        value = new.email if field == "email" else new.username
        raise Conflict(f"A user with {field} {value!r} already exists.", field=field) from err
    assert row is not None
    return User.from_row(row)


def has_any_user(conn: Connection) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM users) AS found").fetchone() == {"found": True}


def create_first_user(conn: Connection, new: NewUser, info: RequestInfo, *,
                      setup_token: str | None = None, requires_setup_token: bool = False) -> User:
    validate_new_user(new)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_FIRST_USER_LOCK,))
    if has_any_user(conn):
        raise Conflict("The first user has already been created.",
                       "Log in with that account, or ask its owner to create yours.")
    if requires_setup_token:
        consume_setup_token(conn, setup_token)
    user = _insert(conn, new, [OWNER])
    record(conn, actor=user.subject(), action="create", resource_type="user", resource_id=user.id,
           target=user.username, diff=diff_fields({}, user.audited()), status=201, info=info)
    return user


def create_user(conn: Connection, actor: Subject, new: NewUser, info: RequestInfo) -> User:
    authorize(actor, Action.CREATE, Resource(ResourceType.USER))
    validate_new_user(new)
    user = _insert(conn, new, [])
    record(conn, actor=actor, action="create", resource_type="user", resource_id=user.id,
           target=user.username, diff=diff_fields({}, user.audited()), status=201, info=info)
    return user


def find_user(conn: Connection, ref: str, *, actor: Subject | None = None) -> User | None:
    """Look a live user up by "me", id or username (case-insensitive)."""
    if ref == "me" and actor is not None:
        clause, value = "id = %s", str(actor.user_id)
    else:
        try:
            clause, value = "id = %s", str(UUID(ref))
        except ValueError:
            clause, value = "lower(username) = lower(%s)", ref
    row = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users WHERE {clause} AND deleted_at IS NULL",  # noqa: S608 -- constant SQL fragments
        (value,),
    ).fetchone()
    return User.from_row(row) if row else None


def find_user_for_login(conn: Connection, login: str) -> User | None:
    row = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users"  # noqa: S608 -- constant column list
        " WHERE (lower(username) = lower(%s) OR lower(email) = lower(%s)) AND deleted_at IS NULL",
        (login, login),
    ).fetchone()
    return User.from_row(row) if row else None


def get_user(conn: Connection, actor: Subject, ref: str) -> User:
    user = find_user(conn, ref, actor=actor)
    # A user one may not read is reported as missing, so ids and names cannot be probed.
    if user is None or not is_allowed(actor, Action.READ, user.resource):
        raise NotFound(f"No user {ref!r}.", "Check the username or id (see 'appliance users list').")
    return user


def list_users(
    conn: Connection, actor: Subject, *, search: str = "", status: str = "", limit: int = 100, offset: int = 0
) -> tuple[list[User], int]:
    if not is_allowed(actor, Action.READ, Resource(ResourceType.USER)):
        own = get_user(conn, actor, "me")
        return [own], 1
    if status and status not in ("active", "suspended"):
        raise InvalidInput(f"Invalid status {status!r}: expected 'active' or 'suspended'.", field="status")
    where = "deleted_at IS NULL AND (%(q)s = '' OR username ILIKE %(like)s OR email ILIKE %(like)s" \
            " OR name ILIKE %(like)s) AND (%(status)s = '' OR status = %(status)s)"
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    params = {"q": search, "like": f"%{escaped}%", "status": status, "limit": limit, "offset": offset}
    total = conn.execute(f"SELECT count(*) AS n FROM users WHERE {where}", params).fetchone()  # noqa: S608 -- constant SQL
    rows = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users WHERE {where}"  # noqa: S608 -- constant SQL
        " ORDER BY lower(username) LIMIT %(limit)s OFFSET %(offset)s",
        params,
    ).fetchall()
    return [User.from_row(r) for r in rows], int(total["n"]) if total else 0


def _active_owner_count(conn: Connection) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM users WHERE 'owner' = ANY(roles) AND status = 'active'"
        " AND deleted_at IS NULL"
    ).fetchone()
    return int(row["n"]) if row else 0


def _lock_user(conn: Connection, actor: Subject, ref: str) -> User:
    user = get_user(conn, actor, ref)
    conn.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user.id,))
    # Owner-count checks must see a stable set of owners: serialise role and status changes.
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_FIRST_USER_LOCK,))
    return user


def _refuse_losing_last_owner(conn: Connection, user: User, what: str) -> None:
    if user.is_owner and user.status == "active" and _active_owner_count(conn) <= 1:
        raise Conflict(f"Cannot {what} {user.username}: it is the last active owner.",
                       "Give another user the owner role first.")


def _update(conn: Connection, user: User, **changes: Any) -> User:
    assignments = ", ".join(f"{column} = %({column})s" for column in changes)
    row = conn.execute(
        f"UPDATE users SET {assignments}, updated_at = now() WHERE id = %(id)s"  # noqa: S608 -- column names come from this module
        f" RETURNING {_USER_COLUMNS}",
        {**changes, "id": user.id},
    ).fetchone()
    assert row is not None
    revocations.changed(conn)  # a cached token must see the account as it now is
    return User.from_row(row)


def set_status(conn: Connection, actor: Subject, ref: str, status: str, info: RequestInfo) -> User:
    user = _lock_user(conn, actor, ref)
    authorize(actor, Action.UPDATE, user.managed)
    if user.id == actor.user_id and status == "suspended":
        raise Conflict("You cannot suspend your own account.", "Ask another admin to do it.")
    if user.status == status:
        return user
    if status == "suspended":
        _refuse_losing_last_owner(conn, user, "suspend")
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE user_id = %s"
                     " AND login_type = 'password' AND revoked_at IS NULL", (user.id,))
    updated = _update(conn, user, status=status)
    record(conn, actor=actor, action="write", resource_type="user", resource_id=user.id,
           target=user.username, diff=diff_fields(user.audited(), updated.audited()), info=info)
    return updated


def set_roles(conn: Connection, actor: Subject, ref: str, roles: list[str], info: RequestInfo) -> User:
    user = _lock_user(conn, actor, ref)
    authorize(actor, Action.UPDATE, Resource(ResourceType.ROLE_ASSIGNMENT))
    unknown = sorted(set(roles) - set(ASSIGNABLE_ROLES))
    if unknown:
        raise InvalidInput(f"Unknown role(s) {', '.join(unknown)}: assignable roles are "
                           f"{', '.join(ASSIGNABLE_ROLES)} (member is implicit).", field="roles")
    wanted = sorted(set(roles))
    if wanted == sorted(user.roles):
        return user
    if OWNER not in wanted:
        _refuse_losing_last_owner(conn, user, "remove the owner role from")
    updated = _update(conn, user, roles=wanted)
    record(conn, actor=actor, action="write", resource_type="user", resource_id=user.id,
           target=user.username, diff=diff_fields(user.audited(), updated.audited()), info=info)
    return updated


def delete_user(conn: Connection, actor: Subject, ref: str, info: RequestInfo) -> None:
    user = _lock_user(conn, actor, ref)
    authorize(actor, Action.DELETE, user.managed)
    if user.id == actor.user_id:
        raise Conflict("You cannot delete your own account.", "Ask another admin to do it.")
    _refuse_losing_last_owner(conn, user, "delete")
    conn.execute("UPDATE api_keys SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
                 (user.id,))
    conn.execute("UPDATE users SET deleted_at = now(), updated_at = now() WHERE id = %s", (user.id,))
    revocations.changed(conn)
    record(conn, actor=actor, action="delete", resource_type="user", resource_id=user.id,
           target=user.username, diff=diff_fields(user.audited(), {}), info=info)


def change_password(conn: Connection, actor: Subject, ref: str, *, old_password: str | None,
                    new_password: str, info: RequestInfo) -> User:
    """Own password (old one required, under the login throttle) or, for a user admin, a member's.

    Ends the user's other sessions.
    """
    user = _lock_user(conn, actor, ref)
    authorize(actor, Action.UPDATE, user.resource)
    if user.id == actor.user_id:
        _check_current_password(conn, user, old_password or "")
    passwords.check_password_policy(new_password, username=user.username, email=user.email)
    updated = _update(conn, user, hashed_password=passwords.hash_password(new_password))
    conn.execute("UPDATE api_keys SET revoked_at = now() WHERE user_id = %s AND login_type = 'password'"
                 " AND revoked_at IS NULL AND id <> %s", (user.id, actor.api_key_id))
    record(conn, actor=actor, action="write", resource_type="user", resource_id=user.id,
           target=user.username, diff=diff_fields(user.audited(), updated.audited()), info=info)
    return updated


def _check_current_password(conn: Connection, user: User, password: str) -> None:
    """A stolen session must not make guessing the password free: it spends the login budget."""
    attempt = throttle.begin_attempt(conn, account=str(user.id), address=None)
    if not passwords.is_password_correct(user.hashed_password, password):
        raise CountedFailure("The current password is wrong.", "Repeated failures are throttled.",
                             field="old_password")
    throttle.succeed(conn, attempt)


def touch_last_seen(conn: Connection, user_id: UUID) -> datetime | None:
    """Stamp the user as seen now, at most once a minute; the new time, or None if not stamped."""
    row = conn.execute("UPDATE users SET last_seen_at = now() WHERE id = %s"
                       " AND (last_seen_at IS NULL OR last_seen_at < now() - interval '1 minute')"
                       " RETURNING last_seen_at", (user_id,)).fetchone()
    return row["last_seen_at"] if row else None

