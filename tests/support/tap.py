"""A TCP proxy that records every byte in both directions: what a process behind it reads and writes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Tap:
    url: str
    to_server: bytearray = field(default_factory=bytearray)
    to_clients: bytearray = field(default_factory=bytearray)


@contextlib.contextmanager
def tapped(host: str, port: int) -> Iterator[Tap]:
    """A loopback proxy to host:port on its own thread; `Tap.url` is http://127.0.0.1:<proxy port>."""
    loop = asyncio.new_event_loop()
    started: list[Tap] = []
    ready = threading.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 16):
                record += data
                writer.write(data)
                await writer.drain()
        writer.close()

    async def main() -> None:
        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
            await asyncio.gather(pipe(reader, upstream_writer, tap.to_server),
                                 pipe(upstream_reader, writer, tap.to_clients))

        listener = await asyncio.start_server(connection, "127.0.0.1", 0)
        tap = Tap(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}")
        started.append(tap)
        ready.set()
        async with listener:
            await listener.serve_forever()

    thread = threading.Thread(target=lambda: _run(loop, main()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield started[0]
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(10)


def _run(loop: asyncio.AbstractEventLoop, coro: object) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(coro)  # type: ignore[arg-type]
