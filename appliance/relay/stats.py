"""The relay's counters and the agents' connection times, written to the database off the packet path.

Counters live in memory and reach relay_stats every STATS_SECONDS as one flat JSON object
(connections, peers, agents, clients, accepts, bytes_in/out, packets_in/out, drops and
drops_<reason>, refusals and refusals_<reason>, ...), what GET /api/v2/relay shows. An agent key's
connection is recorded in workspace_agents the way Coder's coordinator does: first_connected_at
once, last_connected_at on connect and every HEARTBEAT_SECONDS while connected, disconnected_at when
it leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from appliance.db.database import Database
from appliance.sdk.relay_constants import REGION_ID

log = logging.getLogger("appliance.relay")

STATS_SECONDS = 5.0
HEARTBEAT_SECONDS = 15.0


class RelayStats:
    """Counters and agent connection events; the relay calls these on its loop, never waiting."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.agent_events: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self.connected_agents: set[str] = set()

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def drop(self, reason: str, amount: int = 1) -> None:
        self.counts["drops"] += amount
        self.counts[f"drops_{reason}"] += amount

    def refuse(self, reason: str) -> None:
        self.counts["refusals"] += 1
        self.counts[f"refusals_{reason}"] += 1

    def agent_connected(self, agent_id: str) -> None:
        self.connected_agents.add(agent_id)
        self.agent_events.put_nowait((agent_id, True))

    def agent_disconnected(self, agent_id: str) -> None:
        self.connected_agents.discard(agent_id)
        self.agent_events.put_nowait((agent_id, False))

    def snapshot(self, gauges: dict[str, int]) -> dict[str, int]:
        return {**self.counts, **gauges}


CONNECTED_SQL = """
UPDATE workspace_agents SET first_connected_at = coalesce(first_connected_at, now()),
       last_connected_at = now(), disconnected_at = NULL
 WHERE id = %s"""
DISCONNECTED_SQL = "UPDATE workspace_agents SET last_connected_at = now(), disconnected_at = now() WHERE id = %s"
HEARTBEAT_SQL = "UPDATE workspace_agents SET last_connected_at = now() WHERE id = ANY(%s::uuid[])"
STATS_SQL = """
INSERT INTO relay_stats (relay_name, region_id, started_at, updated_at, counters)
VALUES (%s, %s, %s, now(), %s)
ON CONFLICT (relay_name) DO UPDATE SET started_at = EXCLUDED.started_at, updated_at = now(),
       counters = EXCLUDED.counters"""


async def record_agents(db: Database, stats: RelayStats) -> None:
    """Write each agent connect and disconnect as it happens (in order), until cancelled."""
    while True:
        agent_id, connected = await stats.agent_events.get()
        try:
            await asyncio.to_thread(_execute, db, CONNECTED_SQL if connected else DISCONNECTED_SQL, (agent_id,))
        except Exception as err:  # the database is restarting: the next heartbeat catches up
            log.warning("relay_agent_record_failed", extra={"agent_id": agent_id, "error": str(err)})
        finally:
            stats.agent_events.task_done()  # written (or given up): what a graceful stop waits for


async def write_stats(db: Database, stats: RelayStats, name: str, gauges: Callable[[], dict[str, int]]) -> None:
    """relay_stats every STATS_SECONDS and the connected agents' heartbeat every HEARTBEAT_SECONDS."""
    started = datetime.now(UTC)
    last_heartbeat = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            await asyncio.to_thread(_execute, db, STATS_SQL,
                                    (name, REGION_ID, started, Jsonb(stats.snapshot(gauges()))))
            if loop.time() - last_heartbeat >= HEARTBEAT_SECONDS and stats.connected_agents:
                await asyncio.to_thread(_execute, db, HEARTBEAT_SQL, (sorted(stats.connected_agents),))
                last_heartbeat = loop.time()
        except Exception as err:
            log.warning("relay_stats_write_failed", extra={"error": str(err)})
        await asyncio.sleep(STATS_SECONDS)


def _execute(db: Database, statement: str, params: tuple[object, ...]) -> None:
    with db.transaction() as conn:
        conn.execute(statement, params)
