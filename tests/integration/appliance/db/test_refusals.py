"""What PostgreSQL refuses about a value becomes a 400 naming the field, the API's last line of defence."""

from __future__ import annotations

import psycopg
import pytest

from appliance.db.refusals import refused_value


def _refusal(conninfo: str, sql: str, params: tuple[object, ...]) -> BaseException:
    with psycopg.connect(conninfo) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(sql, params)
    return caught.value


@pytest.mark.security(finding=5)
def test_a_check_violation_names_the_column_its_constraint_guards(fresh_db: str) -> None:
    err = _refusal(fresh_db, "INSERT INTO users (username, email, hashed_password) VALUES (%s, %s, '')",
                   ("alice\n", "alice@example.org"))
    refusal = refused_value(err)
    assert refusal is not None and refusal.status == 400 and refusal.field == "username", refusal
    assert "users_username_check" in refusal.message and refusal.detail


@pytest.mark.security(finding=5)
@pytest.mark.parametrize(("sql", "params"), [
    ("SELECT %s::text", ("a\x00b",)),  # psycopg refuses a NUL before PostgreSQL sees it
    ("SELECT 1 OFFSET %s::numeric", (10**20,)),  # past bigint
])
def test_a_value_postgresql_cannot_store_is_a_400(fresh_db: str, sql: str, params: tuple[object, ...]) -> None:
    refusal = refused_value(_refusal(fresh_db, sql, params))
    assert refusal is not None and refusal.status == 400 and refusal.message.startswith("Invalid field"), refusal


def test_any_other_failure_is_left_alone(fresh_db: str) -> None:
    assert refused_value(_refusal(fresh_db, "SELECT * FROM no_such_table", ())) is None
    assert refused_value(ValueError("not a database error")) is None
