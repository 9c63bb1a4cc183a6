"""Password-guess throttling per account and per source address, kept in Postgres so every worker agrees.

An attempt is counted as a failure before its password is verified, under a lock per subject,
so concurrent attempts cannot all pass the check before any of them is recorded; a correct
password then withdraws the count.
"""

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
_LOCK_CLASS = 0x54485254  # "THRT": advisory locks of this module, keyed by hashtext(subject)


@dataclass(frozen=True)
class Attempt:
    """An attempt counted as a failure until withdrawn: its rows in login_failures."""

    account: str
    failure_ids: tuple[int, ...]


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


def begin_attempt(conn: Connection, *, account: str, address: str | None) -> Attempt:
    """Raise Throttled when the account or address failed too often; else count this attempt as failed.

    The locks are held until conn's transaction ends: commit it before the slow password check
    (log_in) or keep the check inside it (a password change), and parallel attempts queue.
    """
    checks = [(ACCOUNT_LIMIT, account)] + ([(ADDRESS_LIMIT, address)] if address else [])
    # Locked in one order, so two attempts never wait on each other crosswise.
    for subject in sorted(_subject(limit, value) for limit, value in checks):
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, subject))
    for limit, value in checks:
        wait = _seconds_until_allowed(conn, limit, value)
        if wait:
            raise Throttled(
                f"Too many failed logins for this {limit.kind}; try again in {wait} seconds.",
                "If you forgot the password, ask a user admin to reset it.",
                retry_after=wait,
            )
    ids = []
    for limit, value in checks:
        row = conn.execute("INSERT INTO login_failures (subject) VALUES (%s) RETURNING id",
                           (_subject(limit, value),)).fetchone()
        assert row is not None
        ids.append(int(row["id"]))
    longest = max(ACCOUNT_LIMIT.window, ADDRESS_LIMIT.window)
    conn.execute("DELETE FROM login_failures WHERE failed_at < now() - %s", (longest,))
    return Attempt(account, tuple(ids))


def succeed(conn: Connection, attempt: Attempt) -> None:
    """The password was right: withdraw this attempt and forgive the account's earlier failures."""
    conn.execute("DELETE FROM login_failures WHERE id = ANY(%s) OR subject = %s",
                 (list(attempt.failure_ids), _subject(ACCOUNT_LIMIT, attempt.account)))


def withdraw(conn: Connection, attempt: Attempt) -> None:
    """The attempt was refused for another reason than its password (a suspended account)."""
    conn.execute("DELETE FROM login_failures WHERE id = ANY(%s)", (list(attempt.failure_ids),))
