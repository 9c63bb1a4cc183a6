"""A psycopg 3 connection pool that opens lazily in each process, so it survives gunicorn's fork."""

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
from appliance.errors import OperatorError

Row = dict[str, Any]
Connection = psycopg.Connection[Row]


class DatabaseUnavailable(OperatorError):
    """PostgreSQL did not hand out a connection in time."""


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

    def _current_pool(self) -> ConnectionPool[Connection]:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._max_size,
                    # UTC sessions: naive times from clients mean UTC, whatever the server's zone.
                    kwargs={"row_factory": dict_row, "options": "-c TimeZone=UTC"},
                    timeout=self._timeout,
                    name="appliance",
                    open=True,
                )
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[Connection]:
        """A connection whose work commits when the block ends and rolls back if it raises."""
        try:
            with self._current_pool().connection(timeout=timeout) as conn:
                yield conn
        except PoolTimeout as err:
            raise DatabaseUnavailable(
                "PostgreSQL did not answer in time.",
                "Check that the database is running and reachable (appliance server logs).",
            ) from err

    def connect_autocommit(self) -> psycopg.Connection[Row]:
        """A connection outside the pool, for LISTEN: it waits for notifications, never in a transaction."""
        return psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            with self.transaction(timeout=timeout) as conn:
                conn.execute("SELECT 1")
        except (DatabaseUnavailable, psycopg.Error):
            return False
        return True

    def close(self) -> None:
        self.pubsub.close()
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None
