"""database: can PostgreSQL be reached, and how long does a ping take (Coder's EDB01, EDB02)?"""

from __future__ import annotations

import asyncio
import time

from appliance.health.context import HealthContext, finding, section
from appliance.sdk.health import HealthSection, Severity

THRESHOLD_MS = 100.0  # Coder warns at 15 ms; a small appliance sharing its CPUs with builds needs headroom
PINGS = 3  # the best of three: one slow ping under a build is not a slow database


async def check(ctx: HealthContext) -> HealthSection:
    if ctx.db is None:
        return section([finding("EDB01", Severity.ERROR, "No database is configured (postgres_url is empty). "
                                "Set postgres_url in /etc/appliance/appliance.toml.")])
    try:
        latency = await asyncio.to_thread(_best_ping, ctx)
    except Exception as err:  # psycopg's and the pool's errors alike mean "cannot reach it"
        ctx.database_up = False
        return section([finding("EDB01", Severity.ERROR, f"PostgreSQL cannot be reached ({_short(err)}). "
                                "Check it runs: systemctl status postgresql@15-main; then its journal.")],
                       threshold_ms=THRESHOLD_MS)
    details = {"latency_ms": round(latency, 2), "threshold_ms": THRESHOLD_MS}
    if latency > THRESHOLD_MS:
        return section([finding("EDB02", Severity.WARNING, f"A PostgreSQL ping took {latency:.0f} ms (more than "
                                f"{THRESHOLD_MS:.0f} ms). Look for a busy disk or CPU on the host.")], **details)
    return section(**details)


def _best_ping(ctx: HealthContext) -> float:
    with ctx.reading() as conn:
        timings = []
        for _ in range(PINGS):
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            timings.append((time.perf_counter() - started) * 1000)
    return min(timings)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
