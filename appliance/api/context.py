"""A view's unit of work: one connection, the authenticated subject, and the caller's details."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import g, request

from appliance.auth.apikeys import Authenticated
from appliance.auth.rbac import Subject
from appliance.auth.users import User
from appliance.auth.web import cached_auth, database, require_subject
from appliance.db.database import Connection

# Views for these methods only read; their few writes (use stamps) stand alone.
_READ_METHODS = frozenset({"GET", "HEAD"})


@contextmanager
def authenticated() -> Iterator[tuple[Connection, Subject]]:
    """Authenticate on the view's connection; a change commits only if the view succeeds.

    A GET or HEAD runs outside a transaction: no BEGIN/COMMIT round trips, and each statement
    sees the latest committed data, as it would inside a READ COMMITTED transaction.
    """
    db = database()
    with (db.reading() if request.method in _READ_METHODS else db.transaction()) as conn:
        yield conn, require_subject(conn)


def current_user() -> User:
    """The caller's account as loaded with their token; valid inside `authenticated()`."""
    auth: Authenticated | None = g.get("auth")
    if auth is None:
        raise RuntimeError("current_user() called outside authenticated()")
    return auth.user


def caller() -> User:
    """The caller's account, for a read that needs nothing else: a cached token costs no connection."""
    assert request.method in _READ_METHODS, "a change checks CSRF and commits through authenticated()"
    cached = cached_auth()
    if cached is not None:
        return cached.user
    with authenticated():
        return current_user()
