"""The shipped migrations are numbered without gaps and every one is non-empty SQL."""

from appliance.db.migrate import available_migrations


def test_migrations_are_contiguous_and_named() -> None:
    migrations = available_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for migration in migrations:
        assert migration.name.replace("_", "").isalnum()
        assert "CREATE" in migration.sql.upper() or "ALTER" in migration.sql.upper()
