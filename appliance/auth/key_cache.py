"""Authenticated tokens a console process has already checked, trusted until the revocation epoch moves.

GET /api/v2/users/me spent most of its time on the one PostgreSQL round trip that checks its token
(docs/adr/0008). A hit here skips it: the entry holds the hash of the secret that matched, the
key's expiry and the account as loaded, and is used only while

- the shared revocation epoch (auth/revocations.py) is the one read before the entry was loaded,
  so any logout, revocation, suspension, deletion, role, password or profile change made through
  the product invalidates every entry in every worker before its own request answers;
- the key has not expired by this process's clock;
- it is younger than `ttl` seconds, which bounds what a change made outside the product (psql, a
  restore) can leave behind, and keeps the once-a-minute use stamps and sliding session expiry
  going, since a miss runs the full check, stamps included.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from appliance.auth import tokens
from appliance.auth.apikeys import Authenticated
from appliance.auth.revocations import RevocationEpoch

DEFAULT_TTL = 10.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    hashed_secret: bytes
    auth: Authenticated
    epoch: int
    loaded_at: float


class KeyCache:
    def __init__(self, epoch: RevocationEpoch, *, ttl: float = DEFAULT_TTL, max_entries: int = MAX_ENTRIES) -> None:
        self.epoch = epoch
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def lookup(self, presented: str) -> Authenticated | None:
        """The cached authentication of `presented`, or None when only PostgreSQL can tell."""
        parts = tokens.parse_token(presented)
        if parts is None:
            return None
        entry = self._entries.get(parts.key_id)
        return entry.auth if entry is not None and self._is_valid(entry, parts) else None

    def authenticate(self, presented: str, load: Callable[[], Authenticated]) -> Authenticated:
        """The cached authentication of `presented`, or `load()`'s (which raises for a bad token), cached."""
        if (cached := self.lookup(presented)) is not None:
            return cached
        parts = tokens.parse_token(presented)
        if parts is None:
            return load()  # load() refuses it with the format error
        epoch = self.epoch.current()  # before the read: a bump during it leaves the entry stale on arrival
        auth = load()
        self._store(parts, _Entry(parts.hashed_secret, auth, epoch, time.monotonic()))
        return auth

    def _is_valid(self, entry: _Entry, parts: tokens.TokenParts) -> bool:
        return (entry.epoch == self.epoch.current()
                and time.monotonic() - entry.loaded_at < self._ttl
                and entry.auth.key.expires_at > datetime.now(UTC)
                and hmac.compare_digest(entry.hashed_secret, parts.hashed_secret))

    def _store(self, parts: tokens.TokenParts, entry: _Entry) -> None:
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()  # a flood of distinct tokens costs round trips, never memory
            self._entries[parts.key_id] = entry
