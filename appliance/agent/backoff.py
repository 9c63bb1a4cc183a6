"""Exponential backoff with full jitter, for reconnecting after the relay or the control plane went away.

Every agent reconnects when a relay restarts; without jitter they would all come back in the same
second. Tenacity and urllib3 retry one call; this schedule outlives a call (it is reset only once a
connection has held), which neither expresses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    first: float = 1.0
    cap: float = 30.0
    _attempts: int = field(default=0, init=False)

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt: first * 2^n capped, then a random half to all of it."""
        ceiling: float = min(self.cap, self.first * 2.0 ** self._attempts)
        self._attempts = min(self._attempts + 1, 32)
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)

    def reset(self) -> None:
        self._attempts = 0
