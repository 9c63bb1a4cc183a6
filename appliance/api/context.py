"""A view's unit of work: one transaction, the authenticated subject, and the caller's details."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from appliance.auth.rbac import Subject
from appliance.auth.web import database, require_subject
from appliance.db.database import Connection


@contextmanager
def authenticated() -> Iterator[tuple[Connection, Subject]]:
    """Authenticate inside the request's transaction; the work commits only if the view succeeds."""
    with database().transaction() as conn:
        yield conn, require_subject(conn)
