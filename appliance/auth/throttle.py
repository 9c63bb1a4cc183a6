"""Login throttling per account and per source address, kept in Postgres so every worker agrees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from appliance.db.database import Connection
from appliance.errors import Throttled


@dataclass(frozen=True)
class Limit:
    kind: str
    failures: int
    window: timedelta


ACCOUNT_LIMIT = Limit("account", failures=5, window=timedelta(minutes=15))
ADDRESS_LIMIT = Limit("address", failures=20, window=timedelta(minutes=15))


def _subject(limit: Limit, value: str) -> str:
    return f"{limit.kind}:{value.lower()}"


def _seconds_until_allowed(conn: Connection, limit: Limit, value: str) -> int:
    row = conn.execute(
        "SELECT count(*) AS failures, min(failed_at) AS oldest,"
        " ceil(extract(epoch FROM min(failed_at) + %s - now())) AS wait"
        " FROM (SELECT failed_at FROM login_failures WHERE subject = %s AND failed_at > now() - %s"
        "       ORDER BY failed_at DESC LIMIT %s) recent",
        (limit.window, _subject(limit, value), limit.window, limit.failures),
    ).fetchone()
    if row is None or row["failures"] < limit.failures:
        return 0
    return max(1, int(row["wait"]))


def check_login_allowed(conn: Connection, *, login: str, address: str | None) -> None:
    """Raise Throttled when the account or the address has failed too often recently."""
    checks = [(ACCOUNT_LIMIT, login)] + ([(ADDRESS_LIMIT, address)] if address else [])
    for limit, value in checks:
        wait = _seconds_until_allowed(conn, limit, value)
        if wait:
            raise Throttled(
                f"Too many failed logins for this {limit.kind}; try again in {wait} seconds.",
                "If you forgot the password, ask a user admin to reset it.",
                retry_after=wait,
            )


def record_login_failure(conn: Connection, *, login: str, address: str | None) -> None:
    subjects = [_subject(ACCOUNT_LIMIT, login)] + ([_subject(ADDRESS_LIMIT, address)] if address else [])
    for subject in subjects:
        conn.execute("INSERT INTO login_failures (subject) VALUES (%s)", (subject,))
    longest = max(ACCOUNT_LIMIT.window, ADDRESS_LIMIT.window)
    conn.execute("DELETE FROM login_failures WHERE failed_at < now() - %s", (longest,))


def clear_login_failures(conn: Connection, *, login: str) -> None:
    conn.execute("DELETE FROM login_failures WHERE subject = %s", (_subject(ACCOUNT_LIMIT, login),))
