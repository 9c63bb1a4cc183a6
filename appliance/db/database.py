"""A psycopg 3 connection pool that opens lazily in each process, so it survives gunicorn's fork.

Pooled connections are in autocommit mode: `transaction()` wraps its block in an explicit
BEGIN/COMMIT, and `reading()` runs each statement on its own, which saves two round trips
for a request that only reads (see docs/adr/0008-api-read-path.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from appliance.db.pubsub import PubSub
from appliance.errors import CountedFailure, OperatorError

Row = dict[str, Any]
SIDE_POOL_SIZE = 16  # as many as the front's WSGI threads (gateway/front.py), which may each hold one
Connection = psycopg.Connection[Row]


class DatabaseUnavailable(OperatorError):
    """PostgreSQL did not hand out a connection in time."""


class PooledConnection(psycopg.Connection[Row]):
    """A pooled connection that keeps one cursor per hot statement from request to request.

    A new cursor resolves a loader for every column of its first result, which for a wide row
    costs about as much CPU as the query itself; a kept cursor pays that once per connection.
    A pooled connection serves one thread at a time, so its kept cursors do too.
    """

    def kept_cursor(self, statement: str) -> psycopg.Cursor[Row]:
        kept: dict[str, psycopg.Cursor[Row]] = self.__dict__.setdefault("_kept_cursors", {})
        cursor = kept.get(statement)
        if cursor is None or cursor.closed:
            cursor = kept[statement] = self.cursor()
        return cursor


def kept_cursor(conn: Connection, statement: str) -> psycopg.Cursor[Row]:
    """The cursor `conn` keeps for `statement`; a new one if conn is not from the pool."""
    return conn.kept_cursor(statement) if isinstance(conn, PooledConnection) else conn.cursor()


class Database:
    def __init__(self, conninfo: str, *, max_size: int = 10, timeout: float = 10.0) -> None:
        self._conninfo = conninfo
        self._max_size = max_size
        self._timeout = timeout
        self._pool: ConnectionPool[Connection] | None = None
        self._pid = 0
        self._lock = threading.Lock()
        # One LISTEN connection per process, beside the pool: subscribers share it (db/pubsub.py).
        self.pubsub = PubSub(conninfo)
        self._side: Database | None = None

    @property
    def conninfo(self) -> str:
        """What the pool connects with: a secret (it may hold the password) that job logs must never show."""
        return self._conninfo

    def _current_pool(self) -> ConnectionPool[Connection]:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._max_size,
                    # UTC sessions: naive times from clients mean UTC, whatever the server's zone.
                    kwargs={"row_factory": dict_row, "options": "-c TimeZone=UTC",
                            "autocommit": True},
                    connection_class=PooledConnection,
                    timeout=self._timeout,
                    name="appliance",
                    open=True,
                )
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def _pooled(self, timeout: float | None) -> Iterator[Connection]:
        try:
            with self._current_pool().connection(timeout=timeout) as conn:
                yield conn
        except PoolTimeout as err:
            raise DatabaseUnavailable(
                "PostgreSQL did not answer in time.",
                "Check that the database is running and reachable (appliance server logs).",
            ) from err

    @contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[Connection]:
        """A connection whose work commits when the block ends and rolls back if it raises.

        A CountedFailure is the exception: it commits first, so that the failure it counted
        (a wrong password, against a throttle) is not undone by refusing the request.
        """
        counted: CountedFailure | None = None
        with self._pooled(timeout) as conn, conn.transaction():
            try:
                yield conn
            except CountedFailure as err:
                counted = err
        if counted is not None:
            raise counted

    @contextmanager
    def reading(self, timeout: float | None = None) -> Iterator[Connection]:
        """A connection outside any transaction: each statement commits (or fails) on its own.

        For work that reads, or whose few writes stand alone (a last-used stamp): no BEGIN and
        no COMMIT round trip. Use `conn.transaction()` inside it for anything that must be atomic.
        """
        with self._pooled(timeout) as conn:
            yield conn

    def side(self) -> Database:
        """A second, small pool (made on first use) for a transaction held open while the request's own
        work runs on this one: a request holding one of each can never starve itself of connections."""
        with self._lock:
            if self._side is None:
                self._side = Database(self._conninfo, max_size=SIDE_POOL_SIZE, timeout=self._timeout)
            return self._side

    def connect_autocommit(self) -> psycopg.Connection[Row]:
        """A connection outside the pool, for LISTEN: it waits for notifications, never in a transaction."""
        return psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            with self.reading(timeout=timeout) as conn:
                conn.execute("SELECT 1")
        except (DatabaseUnavailable, psycopg.Error):
            return False
        return True

    def close(self) -> None:
        self.pubsub.close()
        if self._side is not None:
            self._side.close()
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None
