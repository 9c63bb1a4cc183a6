"""Which node keys the relay admits and pairs: the relay_peers table, held in memory and followed by NOTIFY.

Loaded whole at start and again on every resync notice (pub/sub reconnected or overflowed); between
those, each NOTIFY relay_peers carries the changed row, so admission and pairing are dict lookups and
never a database round trip per packet. A row that disappears (an API key revoked, a logout, a stop or
delete build queued, an agent that registered a new key) revokes its key: the relay closes that
connection at once with the reason given here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from appliance.db.database import Connection, Database
from appliance.relay import probe

log = logging.getLogger("appliance.relay")

CHANNEL = "relay_peers"
RESYNC_SECONDS = 60.0  # re-read everything this often anyway, in case a notice was lost
RETRY_SECONDS = 1.0
REVOKED = ("access revoked: the control plane no longer vouches for this key "
           "(token revoked, logged out, or workspace stopped)")
REPLACED = "access revoked: the agent registered a newer key"
PROBE_EXPIRES = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PeerRow:
    """One admitted key: what it is and which agent it belongs or is paired to."""

    node_key: bytes
    kind: str  # "agent" or "client"
    agent_id: str
    expires_at: datetime

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or datetime.now(UTC))


Revoke = Callable[[bytes, str], None]
Fetch = Callable[[bytes], Awaitable["PeerRow | None"]]


class Admission:
    """The vouched keys by node key, and by agent; `on_revoke(key, reason)` is told of every key that left."""

    def __init__(self, on_revoke: Revoke | None = None, fetch: Fetch | None = None) -> None:
        self.rows: dict[bytes, PeerRow] = {}
        self.on_revoke: Revoke = on_revoke or (lambda key, reason: None)
        self.fetch = fetch

    async def admit(self, key: bytes) -> str | None:
        """At a handshake: why `key` may not connect, or None when it may.

        A key not known yet is read from the database once: a client that dials right after pairing
        may be faster than the NOTIFY that announces its row. Packets never take this path.
        """
        if key not in self.rows and self.fetch is not None:
            row = await self.fetch(key)
            if row is not None and key not in self.rows:
                self.put(row)
        return self.refusal(key)

    def lookup(self, key: bytes) -> PeerRow | None:
        """The key's row if it is admitted now (present and not expired)."""
        row = self.rows.get(key)
        return row if row is not None and not row.expired() else None

    def refusal(self, key: bytes) -> str | None:
        """Why `key` may not connect, or None when it may."""
        row = self.rows.get(key)
        if row is None:
            return ("not admitted: the control plane has not vouched for this key "
                    "(an agent registers it with its token; a client pairs with the agent first)")
        if row.expired():
            return f"not admitted: the control plane's vouching for this key expired at {row.expires_at.isoformat()}"
        return None

    def paired(self, source: bytes, destination: bytes) -> bool:
        """The pairing rule: both admitted, one agent and one client, the same agent (or the health probe's pair)."""
        a, b = self.lookup(source), self.lookup(destination)
        return (a is not None and b is not None and a.agent_id == b.agent_id
                and (a.kind != b.kind or a.kind == "probe"))

    def put(self, row: PeerRow) -> None:
        if row.kind == "agent":  # one key per agent: an older one is gone
            for other in [k for k, r in self.rows.items() if r.kind == "agent" and r.agent_id == row.agent_id]:
                if other != row.node_key:
                    self.remove(other, REPLACED)
        self.rows[row.node_key] = row

    def remove(self, key: bytes, reason: str = REVOKED) -> None:
        if self.rows.pop(key, None) is not None:
            self.on_revoke(key, reason)

    def replace_all(self, rows: list[PeerRow]) -> None:
        fresh = {row.node_key: row for row in rows}
        for key in [k for k in self.rows if k not in fresh]:
            self.remove(key)
        self.rows.update(fresh)

    def apply(self, payload: str) -> None:
        """One NOTIFY relay_peers: {op, node_key (hex), kind, agent_id, expires_at}."""
        data = json.loads(payload)
        key = bytes.fromhex(data["node_key"])
        if data["op"] == "DELETE":
            self.remove(key)
            return
        self.put(PeerRow(key, data["kind"], str(data["agent_id"]), datetime.fromisoformat(data["expires_at"])))


def load_rows(conn: Connection) -> list[PeerRow]:
    rows = conn.execute("SELECT node_key, kind, agent_id, expires_at FROM relay_peers").fetchall()
    return [PeerRow(bytes(r["node_key"]), r["kind"], str(r["agent_id"]), r["expires_at"]) for r in rows]


def load_probe_rows(db: Database) -> list[PeerRow]:
    """The health probe's pair (probe.py), minted from its site secret with every full read: paired only
    with each other, never written to relay_peers."""
    return [PeerRow(key.public, probe.KIND, probe.PAIR_ID, PROBE_EXPIRES)
            for key in probe.probe_keys(probe.probe_secret(db))]


def fetcher(db: Database) -> Fetch:
    """Admission's one read for a key it does not know yet."""
    def read(key: bytes) -> PeerRow | None:
        with db.reading() as conn:
            row = conn.execute("SELECT node_key, kind, agent_id, expires_at FROM relay_peers WHERE node_key = %s",
                               (key,)).fetchone()
        return None if row is None else PeerRow(bytes(row["node_key"]), row["kind"], str(row["agent_id"]),
                                                row["expires_at"])

    async def fetch(key: bytes) -> PeerRow | None:
        return await asyncio.to_thread(read, key)

    return fetch


async def reload(db: Database, admission: Admission) -> None:
    def read() -> list[PeerRow]:
        with db.reading() as conn:
            rows = load_rows(conn)
        return rows + load_probe_rows(db)

    admission.replace_all(await asyncio.to_thread(read))


async def follow(db: Database, admission: Admission, loaded: asyncio.Event | None = None) -> None:
    """Keep `admission` equal to relay_peers until cancelled; `loaded` is set after the first full read."""
    while True:
        try:
            async with db.pubsub.subscribe_async(CHANNEL) as notices:
                await reload(db, admission)
                if loaded is not None:
                    loaded.set()
                while True:
                    notice = await notices.get(RESYNC_SECONDS)
                    if notice is None or notice.is_resync:
                        await reload(db, admission)
                    elif notice.payload is not None:
                        with suppress(ValueError, KeyError, TypeError):
                            admission.apply(notice.payload)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the database is restarting: keep what we know, try again
            log.warning("relay_admission_reload_failed", extra={"error": str(err)})
            await asyncio.sleep(RETRY_SECONDS)
