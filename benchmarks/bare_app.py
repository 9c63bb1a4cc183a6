"""The baselines for api_throughput.py: bare Flask routes, one constant, one with a single query.

Served by gunicorn with the same settings as the appliance, so the ratio between the two
isolates what the appliance adds per request (auth, a database query, JSON, headers).
`QUERY_PATH` adds only a pooled `SELECT 1` (autocommit, like the appliance's reads) to the
constant route: the ceiling any endpoint that checks a token in PostgreSQL can reach.
"""

from __future__ import annotations

import os
import threading

from flask import Flask
from psycopg_pool import ConnectionPool

BODY = '{"ok":true}'
PATH = "/bare"
QUERY_PATH = "/bare/query"
POSTGRES_ENV = "BENCH_POSTGRES_URL"

app = Flask("bare")
_pool: ConnectionPool | None = None
_lock = threading.Lock()


def _connections() -> ConnectionPool:
    """One pool per worker, opened on first use (after gunicorn's fork)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ConnectionPool(os.environ[POSTGRES_ENV], min_size=1, max_size=10,
                                   kwargs={"autocommit": True}, open=True)
        return _pool


@app.get(PATH)
def constant() -> tuple[str, int, dict[str, str]]:
    return BODY, 200, {"Content-Type": "application/json"}


@app.get(QUERY_PATH)
def one_query() -> tuple[str, int, dict[str, str]]:
    with _connections().connection() as conn:
        conn.execute("SELECT 1").fetchone()
    return BODY, 200, {"Content-Type": "application/json"}
