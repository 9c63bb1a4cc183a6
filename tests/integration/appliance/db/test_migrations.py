"""Migrations on a real PostgreSQL: from empty, idempotent, serialised, and refusing tampered history."""

from __future__ import annotations

import threading

import psycopg
import pytest

from appliance.db.migrate import MigrationError, apply_migrations, available_migrations, pending_migrations

EXPECTED_TABLES = {"users", "api_keys", "login_failures", "audit_logs", "site_secrets", "schema_migrations"}


def _tables(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_migrating_an_empty_database_creates_the_schema(empty_db: str) -> None:
    assert pending_migrations(empty_db) == available_migrations()
    applied = apply_migrations(empty_db)
    assert [m.version for m in applied] == [m.version for m in available_migrations()]
    assert _tables(empty_db) >= EXPECTED_TABLES
    assert pending_migrations(empty_db) == []


def test_applying_twice_is_a_no_op(empty_db: str) -> None:
    apply_migrations(empty_db)
    assert apply_migrations(empty_db) == []
    with psycopg.connect(empty_db) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(available_migrations()),)


def test_concurrent_migrators_apply_each_migration_once(empty_db: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(len(apply_migrations(empty_db)))
        except BaseException as err:  # collected and re-raised by the test thread
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == [0, 0, 0, len(available_migrations())]


def test_an_applied_migration_that_changed_is_refused(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(fresh_db)


def test_a_database_newer_than_the_code_is_refused(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
    with pytest.raises(MigrationError, match="newer than this release knows"):
        apply_migrations(fresh_db)


def test_the_audit_log_refuses_edits_and_deletes(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        conn.execute("INSERT INTO audit_logs (action, resource_type, status_code) VALUES ('create', 'user', 201)")
        conn.commit()
        for statement in ("UPDATE audit_logs SET action = 'forged'", "DELETE FROM audit_logs"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
            conn.rollback()
