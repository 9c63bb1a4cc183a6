"""A relay connection's incoming bytes, read in exact amounts, for both HTTP fronts' byte connections.

Past READ_HIGH_WATER buffered bytes the transport stops reading (TCP backpressure reaches the
sender) and resumes below READ_LOW_WATER. The aiohttp mount (http.py) and the relay's own front
(front.py) feed it from their transports and serve Relay.serve's read_exactly from it.
"""

from __future__ import annotations

import asyncio

from appliance.relay import frames

READ_HIGH_WATER = 1 << 20
READ_LOW_WATER = 256 << 10


class Inbox:
    __slots__ = ("_buffer", "_eof", "_paused", "_transport", "_waiter")

    def __init__(self, transport: asyncio.BaseTransport | None) -> None:
        self._transport = transport if isinstance(transport, asyncio.ReadTransport) else None
        self._buffer = frames.Chunks()
        self._waiter: asyncio.Future[None] | None = None
        self._eof = self._paused = False

    def feed(self, data: bytes) -> None:
        self._buffer.append(data)
        if self._buffer.size > READ_HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read_exactly(self, n: int) -> bytes:
        while self._buffer.size < n:
            if self._eof:
                raise ConnectionResetError("the peer closed the connection")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = self._buffer.take(n)
        if self._paused and self._buffer.size < READ_LOW_WATER and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data


def close_transport(transport: asyncio.BaseTransport | None) -> None:
    """Close, or abort when bytes still wait to be written: a peer that is not reading would hold a close forever."""
    if isinstance(transport, asyncio.WriteTransport):
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()
