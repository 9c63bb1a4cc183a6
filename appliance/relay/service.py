"""The relay's lifetime, whatever front serves it: key, admission, counters, background tasks, graceful stop.

The gateway's aiohttp mount (http.py, embedded) and `appliance relay serve`'s own front (front.py,
installed) both build a RelayService here and start and stop it the same way, so the two fronts
differ only in how they parse HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from nacl.public import PrivateKey

from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.relay import admission as admission_module
from appliance.relay import stats
from appliance.relay.admission import Admission
from appliance.relay.keys import NodeKey
from appliance.relay.limits import TokenBucket, accept_limiter
from appliance.relay.server import Relay, RelaySettings

log = logging.getLogger("appliance.relay")

KEY_FILE = "relay-node.key"  # under pki_dir: the relay's Curve25519 private key, hex, 0600
ADMISSION_WAIT_SECONDS = 10.0  # how long start waits for the first read of relay_peers
SWEEP_SECONDS = 1.0
DRAIN_SECONDS = 2.0  # at shutdown, for the agents' disconnect times to reach the database


@dataclass
class RelayService:
    relay: Relay
    accept: TokenBucket
    stats: stats.RelayStats
    db: Database
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Follow admissions, write counters and connection times, sweep; return once admissions are loaded."""
        relay, db = self.relay, self.db
        loaded = asyncio.Event()
        self.tasks = [
            asyncio.create_task(admission_module.follow(db, relay.admission, loaded), name="relay-admission"),
            asyncio.create_task(stats.record_agents(db, self.stats), name="relay-agents"),
            asyncio.create_task(stats.write_stats(db, self.stats, socket.gethostname(), relay.gauges),
                                name="relay-stats"),
            asyncio.create_task(_sweep(relay), name="relay-sweep"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loaded.wait(), ADMISSION_WAIT_SECONDS)
        log.info("relay_started", extra={"server_key": relay.key.public_hex, "admitted": len(relay.admission.rows)})

    async def shutdown(self) -> None:
        """Graceful stop: Restarting to every client, then the agents' disconnect times written."""
        if self.relay.shutting_down:
            return
        await self.relay.shutdown()
        # Until every disconnect is written, not just taken off the queue (the write may still be under way).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stats.agent_events.join(), DRAIN_SECONDS)

    async def stop(self) -> None:
        await self.shutdown()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def build_service(config: ServerConfig, db: Database) -> RelayService:
    counters = stats.RelayStats()
    admission = Admission(fetch=admission_module.fetcher(db))
    relay = Relay(load_key(config.pki_dir / KEY_FILE), admission, settings(config), counters)
    return RelayService(relay, accept_limiter(config.relay_accept_per_second, config.relay_accept_burst),
                        counters, db)


def load_key(path: Path) -> NodeKey:
    """The relay's key pair from `path`, made (0600) on first start so it stays the same across restarts.

    Without a pki folder to keep it in (a test's configuration), the key lives as long as the process.
    """
    if path.exists():
        return NodeKey(PrivateKey(bytes.fromhex(path.read_text().strip())))
    key = NodeKey.generate()
    try:
        path.parent.mkdir(exist_ok=True, mode=0o700)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(bytes(key.private).hex() + "\n")
        temporary.replace(path)
    except OSError as err:
        log.warning("relay_key_not_persisted", extra={"path": str(path), "error": err.strerror})
    return key


def settings(config: ServerConfig) -> RelaySettings:
    return RelaySettings(rate_bytes_per_second=config.relay_rate_bytes_per_second,
                         rate_burst_bytes=config.relay_rate_burst_bytes)


async def _sweep(relay: Relay) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        relay.sweep()
