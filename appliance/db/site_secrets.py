"""Secrets generated once inside Postgres, so every process and worker of a site shares them."""

from __future__ import annotations

import secrets

from appliance.db.database import Database


def site_secret(db: Database, name: str, length: int = 32) -> bytes:
    """Return the named secret, creating it on first use; concurrent first uses agree."""
    with db.transaction() as conn:
        conn.execute("INSERT INTO site_secrets (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (name, secrets.token_bytes(length)))
        row = conn.execute("SELECT value FROM site_secrets WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return bytes(row["value"])
