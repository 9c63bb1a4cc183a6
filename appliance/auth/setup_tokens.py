"""One-time setup links: an installed appliance creates its first user only with one of these."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from appliance.db.database import Connection
from appliance.errors import Conflict, Forbidden

DEFAULT_LIFETIME = timedelta(hours=24)
_HINT = "Run 'appliance setup-link' on the appliance host for a new link."


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_setup_token(conn: Connection, lifetime: timedelta = DEFAULT_LIFETIME) -> str:
    """A new link token; earlier unused ones stop working, so only the newest link is valid."""
    if conn.execute("SELECT EXISTS (SELECT 1 FROM users) AS found").fetchone() == {"found": True}:
        raise Conflict("The first user already exists, so there is nothing to set up.",
                       "Log in with that account; owners add other users from the console.")
    token = secrets.token_urlsafe(32)
    conn.execute("UPDATE setup_tokens SET used_at = now() WHERE used_at IS NULL")
    conn.execute("INSERT INTO setup_tokens (hashed_secret, expires_at) VALUES (%s, now() + %s)",
                 (_hash(token), lifetime))
    return token


def consume_setup_token(conn: Connection, token: str | None) -> None:
    """Accept a live token once (in the caller's transaction), or refuse with 403."""
    if not token:
        raise Forbidden("Creating the first user needs the one-time setup link.", _HINT)
    rows = conn.execute("SELECT id, hashed_secret FROM setup_tokens WHERE used_at IS NULL AND expires_at > now()"
                        " FOR UPDATE").fetchall()
    for row in rows:
        if hmac.compare_digest(bytes(row["hashed_secret"]), _hash(token)):
            conn.execute("UPDATE setup_tokens SET used_at = now() WHERE id = %s", (row["id"],))
            return
    raise Forbidden("This setup link is invalid, used or expired.", _HINT)
