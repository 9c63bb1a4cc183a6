"""Numbered SQL migrations, each applied in its own transaction under one advisory lock.

Files are appliance/db/migrations/NNNNNN_name.up.sql. An applied migration whose file later
changed is refused: the database would no longer match what the code expects.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from appliance.errors import ConfigError, OperatorError

log = logging.getLogger(__name__)

# Any constant works as long as every appliance process uses the same one: "APPL" in ASCII.
MIGRATION_LOCK_ID = 0x4150504C
_FILE_NAME = re.compile(r"^(\d{6})_([a-z0-9_]+)\.up\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(OperatorError):
    """The schema cannot be brought to the version this code expects."""


def available_migrations() -> list[Migration]:
    folder = resources.files("appliance.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"Migration numbering has a gap or duplicate at {migration.version:06d}.",
                                 "This is a packaging bug; reinstall the appliance release.")
    return found


def _applied(conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, str]:
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(str(version)): str(checksum) for version, checksum in rows}


def _check_history(applied: dict[int, str], known: list[Migration]) -> None:
    by_version = {m.version: m for m in known}
    newer = sorted(v for v in applied if v not in by_version)
    if newer:
        raise MigrationError(
            f"The database has migration {newer[-1]:06d}, newer than this release knows.",
            "Run the newer appliance release, or restore the backup taken before the upgrade.",
        )
    for version, checksum in applied.items():
        if by_version[version].checksum != checksum:
            raise MigrationError(
                f"Migration {version:06d}_{by_version[version].name} was changed after it was applied.",
                "Applied migrations must never be edited; add a new numbered migration instead.",
            )


def pending_migrations(conninfo: str) -> list[Migration]:
    known = available_migrations()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        applied = _applied(conn) if exists and exists[0] else {}
    _check_history(applied, known)
    return [m for m in known if m.version not in applied]


def apply_migrations(conninfo: str) -> list[Migration]:
    """Bring the schema up to date; returns what was applied now (empty when already current)."""
    known = available_migrations()
    done: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = _applied(conn)
            _check_history(applied, known)
            for migration in (m for m in known if m.version not in applied):
                _apply_one(conn, migration)
                done.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return done


def _apply_one(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    label = f"{migration.version:06d}_{migration.name}"
    try:
        with conn.transaction():
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    except psycopg.Error as err:
        raise MigrationError(f"Migration {label} failed and was rolled back: {err}".rstrip(),
                             "The database is unchanged by this migration; fix the cause and retry.") from err
    log.info("migration_applied", extra={"migration": label})


def require_current_schema(postgres_url: str | None, process: str) -> str:
    """The database URL for a process that cannot start PostgreSQL itself, once its schema is current.

    gunicorn's console and the standalone gateway both refuse to serve an old schema: a request
    would fail half-way on a missing column instead of saying what to do.
    """
    if postgres_url is None:
        raise ConfigError(f"postgres_url is not set, and {process} cannot start embedded PostgreSQL.",
                          "Set APPLIANCE_POSTGRES_URL or postgres_url in appliance.toml, or use "
                          "'appliance server' for the embedded quickstart.")
    pending = pending_migrations(postgres_url)
    if pending:
        raise ConfigError(f"The database schema is behind: {len(pending)} migration(s) pending.",
                          f"Run 'appliance migrate' first, then start {process} again.")
    return postgres_url
