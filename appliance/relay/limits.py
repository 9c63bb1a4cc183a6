"""Rate limits that protect the relay: a per-client receive token bucket and the accept limiter.

Both are derper's: the per-client bucket (--rate-config: bytes per second and a burst of at least
one whole frame) is charged with a frame's length from its header, before the payload is read, so
a fast sender is slowed by TCP backpressure rather than dropped; the accept limiter (connections per
second plus a burst) refuses new connections past it. A rate of 0 means unlimited.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from appliance.relay.frames import HEADER_LEN, KEY_LEN, MAX_PACKET_SIZE

MIN_BURST_BYTES = MAX_PACKET_SIZE + KEY_LEN  # 65 568: one whole SendPacket always fits (derper's floor)
FRAME_OVERHEAD = HEADER_LEN


@dataclass
class TokenBucket:
    """`rate` tokens a second up to `burst`; rate 0 never limits."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take_now(self, amount: float = 1.0) -> bool:
        """Take `amount` if it is there; False (nothing taken) otherwise."""
        if self.unlimited:
            return True
        self._refill(time.monotonic())
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def delay_for(self, amount: float) -> float:
        """Take `amount` (going into debt if need be) and return how long to wait before going on."""
        if self.unlimited:
            return 0.0
        self._refill(time.monotonic())
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def take(self, amount: float) -> None:
        """Wait until `amount` tokens were earned; what the relay does before reading a payload."""
        delay = self.delay_for(amount)
        if delay > 0:
            await asyncio.sleep(delay)


def receive_bucket(bytes_per_second: int, burst_bytes: int) -> TokenBucket:
    """A client's receive bucket; the burst is raised to one whole frame so no frame waits forever."""
    return TokenBucket(float(bytes_per_second), float(max(burst_bytes, MIN_BURST_BYTES)))


def accept_limiter(per_second: float, burst: int) -> TokenBucket:
    return TokenBucket(per_second, float(max(burst, 1)))
