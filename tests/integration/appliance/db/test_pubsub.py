"""db/pubsub.py against real PostgreSQL: fan-out by channel, and a resync after the connection drops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from appliance.db.database import Database
from appliance.db.pubsub import APPLICATION_NAME, Notice

pytestmark = pytest.mark.integration


@pytest.fixture
def db(fresh_db: str) -> Iterator[Database]:
    database = Database(fresh_db)
    yield database
    database.close()


def _notify(conninfo: str, channel: str, payload: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def _drop_listener(conninfo: str) -> int:
    """What a database restart does to the LISTEN connection: terminate its backend."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = %s AND datname = current_database()",
                            (APPLICATION_NAME,)).fetchall()
    return len(rows)


def test_each_subscriber_of_a_channel_gets_its_notices_and_no_other_channels(db: Database, fresh_db: str) -> None:
    with db.pubsub.subscribe("jobs_a") as first, db.pubsub.subscribe("jobs_a") as second, \
            db.pubsub.subscribe("jobs_b") as other:
        for subscription in (first, second, other):  # a first LISTEN asks its subscribers to read once
            while (notice := subscription.get(0.5)) is not None:
                assert notice.is_resync
        _notify(fresh_db, "jobs_a", "42")
        assert first.get(5) == Notice("jobs_a", "42")
        assert second.get(5) == Notice("jobs_a", "42")
        assert other.get(0.5) is None
    with psycopg.connect(fresh_db) as conn:
        listeners = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                                 " AND datname = current_database()", (APPLICATION_NAME,)).fetchone()
    assert listeners == (1,), "three subscribers share one LISTEN connection"


def test_after_the_connection_drops_subscribers_are_told_to_reread_and_notices_resume(
        db: Database, fresh_db: str) -> None:
    with db.pubsub.subscribe("jobs_a") as subscription:
        while subscription.get(0.5) is not None:
            pass
        assert _drop_listener(fresh_db) == 1
        resync = subscription.get(10)
        assert resync is not None and resync.is_resync, "a reconnect says: notices may have been missed"
        _notify(fresh_db, "jobs_a", "after")
        assert subscription.get(5) == Notice("jobs_a", "after")


def test_an_event_loop_subscribes_alike(db: Database, fresh_db: str) -> None:
    async def scenario() -> Notice | None:
        async with db.pubsub.subscribe_async("logs_a") as subscription:
            while (notice := await subscription.get(0.5)) is not None:
                assert notice.is_resync
            await asyncio.to_thread(_notify, fresh_db, "logs_a", "job-1")
            return await subscription.get(5)

    assert asyncio.run(scenario()) == Notice("logs_a", "job-1")
