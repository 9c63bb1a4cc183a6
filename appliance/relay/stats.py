"""The relay's counters and its connections' times, written to the database off the packet path.

Counters live in memory and reach relay_stats every STATS_SECONDS as one flat JSON object
(connections, peers, agents, clients, accepts, bytes_in/out, packets_in/out, drops and
drops_<reason>, refusals and refusals_<reason>, ...), what GET /api/v2/relay shows. An agent key's
connection is recorded in workspace_agents the way Coder's coordinator does: first_connected_at
once, last_connected_at on connect and every HEARTBEAT_SECONDS while connected, disconnected_at when
it leaves. A client key's connection completes its workspace_connections row (the connection audit,
docs/adr/0031): connected_at when admitted, then ended_at and the bytes forwarded each way, counted in
memory and written once when it leaves, with a "disconnect" entry in the audit log. Events are
written in order by one task; a relay that starts closes the rows a crash left open.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from appliance.db.database import Database
from appliance.sdk.relay_constants import REGION_ID

log = logging.getLogger("appliance.relay")

STATS_SECONDS = 5.0
HEARTBEAT_SECONDS = 15.0


class RelayStats:
    """Counters and agent connection events; the relay calls these on its loop, never waiting."""

    def __init__(self, name: str = "") -> None:
        self.name = name  # the relay's name in relay_stats and workspace_connections.relay_name
        self.counts: Counter[str] = Counter()
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()  # (statement, parameters)
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
        self.events.put_nowait((CONNECTED_SQL, {"agent": agent_id}))

    def agent_disconnected(self, agent_id: str) -> None:
        self.connected_agents.discard(agent_id)
        self.events.put_nowait((DISCONNECTED_SQL, {"agent": agent_id}))

    def client_connected(self, key: bytes) -> None:
        self.events.put_nowait((CLIENT_CONNECTED_SQL, {"key": key, "relay": self.name}))

    def client_left(self, key: bytes, to_agent: int, from_agent: int, *, ended: bool) -> None:
        self.events.put_nowait((CLIENT_ENDED_SQL if ended else CLIENT_BYTES_SQL,
                                {"key": key, "to": to_agent, "from": from_agent}))

    def snapshot(self, gauges: dict[str, int]) -> dict[str, int]:
        return {**self.counts, **gauges}


CONNECTED_SQL = """
UPDATE workspace_agents SET first_connected_at = coalesce(first_connected_at, now()),
       last_connected_at = now(), disconnected_at = NULL
 WHERE id = %(agent)s"""
DISCONNECTED_SQL = """
UPDATE workspace_agents SET last_connected_at = now(), disconnected_at = now() WHERE id = %(agent)s"""
CLIENT_CONNECTED_SQL = """
UPDATE workspace_connections SET connected_at = coalesce(connected_at, now()), ended_at = NULL,
       relay_name = %(relay)s
 WHERE node_key = %(key)s"""
# A connection replaced by a newer one with the same key: its bytes count, the row stays open.
CLIENT_BYTES_SQL = """
UPDATE workspace_connections SET bytes_to_agent = coalesce(bytes_to_agent, 0) + %(to)s,
       bytes_from_agent = coalesce(bytes_from_agent, 0) + %(from)s
 WHERE node_key = %(key)s"""
# The end, as a security officer reads it: a "disconnect" entry beside the pairing's "connect".
_AUDIT_END = """
INSERT INTO audit_logs (user_id, username, action, resource_type, resource_id, resource_target, diff,
                        status_code, ip, user_agent)
SELECT e.user_id, e.username, 'disconnect', 'workspace', e.workspace_id::text, u.username || '/' || w.name,
       jsonb_build_object(
           'agent', jsonb_build_object('old', e.agent_name, 'new', null, 'secret', false),
           'kind', jsonb_build_object('old', e.kind, 'new', null, 'secret', false),
           'node_key', jsonb_build_object('old', encode(e.node_key, 'hex'), 'new', null, 'secret', false),
           'bytes_to_agent', jsonb_build_object('old', null, 'new', coalesce(e.bytes_to_agent::text, 'unknown'),
                                                'secret', false),
           'bytes_from_agent', jsonb_build_object('old', null, 'new', coalesce(e.bytes_from_agent::text, 'unknown'),
                                                  'secret', false)),
       200, e.client_ip, e.user_agent
  FROM ended e JOIN workspaces w ON w.id = e.workspace_id JOIN users u ON u.id = w.owner_id"""
CLIENT_ENDED_SQL = """
WITH ended AS (
    UPDATE workspace_connections SET ended_at = now(),
           bytes_to_agent = coalesce(bytes_to_agent, 0) + %(to)s,
           bytes_from_agent = coalesce(bytes_from_agent, 0) + %(from)s
     WHERE node_key = %(key)s AND ended_at IS NULL RETURNING *)""" + _AUDIT_END  # noqa: S608 (constants only)
# At start: what this relay's crash left open ends at its last sign of life, bytes unknown.
CLOSE_ORPHANS_SQL = """
WITH ended AS (
    UPDATE workspace_connections c
       SET ended_at = greatest(c.connected_at, coalesce(
               (SELECT updated_at FROM relay_stats WHERE relay_name = %(relay)s), now()))
     WHERE c.relay_name = %(relay)s AND c.ended_at IS NULL AND c.connected_at IS NOT NULL
 RETURNING c.*)""" + _AUDIT_END  # noqa: S608 (constants only)
HEARTBEAT_SQL = "UPDATE workspace_agents SET last_connected_at = now() WHERE id = ANY(%s::uuid[])"
STATS_SQL = """
INSERT INTO relay_stats (relay_name, region_id, started_at, updated_at, counters)
VALUES (%s, %s, %s, now(), %s)
ON CONFLICT (relay_name) DO UPDATE SET started_at = EXCLUDED.started_at, updated_at = now(),
       counters = EXCLUDED.counters"""


async def record_events(db: Database, stats: RelayStats) -> None:
    """Write each connect and disconnect as it happens (in order), until cancelled."""
    while True:
        statement, params = await stats.events.get()
        try:
            await asyncio.to_thread(_execute, db, statement, params)
        except Exception as err:  # the database is restarting: an agent's next heartbeat catches up
            log.warning("relay_event_record_failed", extra={"error": str(err)})
        finally:
            stats.events.task_done()  # written (or given up): what a graceful stop waits for


async def close_orphans(db: Database, name: str) -> None:
    """End the connections this relay left open when it stopped without recording them (a crash)."""
    try:
        await asyncio.to_thread(_execute, db, CLOSE_ORPHANS_SQL, {"relay": name})
    except Exception as err:
        log.warning("relay_orphans_not_closed", extra={"error": str(err)})


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


def _execute(db: Database, statement: str, params: tuple[object, ...] | dict[str, Any]) -> None:
    with db.transaction() as conn:
        conn.execute(statement, params)
