"""What every gateway handler shares: the config, the pool, the database threads, the fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

from appliance.config import ServerConfig
from appliance.db.database import Database

T = TypeVar("T")
Fallback = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONFIG = web.AppKey("config", ServerConfig)
DATABASE = web.AppKey("database", Database)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
# What a request the gateway does not serve itself gets (a 404, or the embedded front's proxy).
FALLBACK: web.AppKey[Fallback] = web.AppKey("fallback")


async def in_db(app: web.Application, work: Callable[..., T], *args: object) -> T:
    """Run `work(conn, *args)` in one transaction on a database thread, without blocking the loop."""
    db = app[DATABASE]

    def run() -> T:
        with db.transaction() as conn:
            return work(conn, *args)

    return await asyncio.get_running_loop().run_in_executor(app[EXECUTOR], run)


