"""A revocation epoch every process of one console shares, so a cached token is never trusted after a revoke.

The epoch is an 8-byte counter in a small file mapped into memory (on an installed host, in the
console's RuntimeDirectory, a tmpfs). Reading it costs no system call. Every change to a key or an
account (logout, token revocation, suspension, deletion, a role or password change, any profile
edit) bumps it AFTER its transaction commits and before the request that made it answers, so a
request that starts after the revocation's answer sees a new epoch and reads PostgreSQL again
(docs/adr/0041-token-cache.md). A bump made before the commit would not do: a reader could cache
the pre-commit row under the new epoch.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from pathlib import Path

from appliance.db.database import Connection, after_commit

_COUNTER = struct.Struct("<Q")


class RevocationEpoch:
    """The shared counter in `path`, created on first use (mode 0600: only the console's own user)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < _COUNTER.size:
            os.ftruncate(self._fd, _COUNTER.size)
        self._map = mmap.mmap(self._fd, _COUNTER.size)

    def current(self) -> int:
        value: int = _COUNTER.unpack_from(self._map, 0)[0]
        return value

    def bump(self) -> None:
        # flock: two processes bumping at once must not both write the same next value.
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            _COUNTER.pack_into(self._map, 0, (self.current() + 1) % 2**64)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


_epochs: list[RevocationEpoch] = []
_lock = threading.Lock()


def register(epoch: RevocationEpoch) -> None:
    """Bump `epoch` on every change this process makes to keys or accounts (one per console app)."""
    with _lock:
        if all(known.path != epoch.path for known in _epochs):
            _epochs.append(epoch)


def changed(conn: Connection) -> None:
    """Keys or accounts were changed on `conn`: bump every registered epoch once its transaction ends."""
    after_commit(conn, _bump_all)


def _bump_all() -> None:
    with _lock:
        epochs = list(_epochs)
    for epoch in epochs:
        epoch.bump()
