"""One LISTEN connection per process, fanned out to subscribers by channel (PostgreSQL NOTIFY).

A thread owns the connection, so threads (the in-process provisioners) and event loops (the
gateway) subscribe alike. Notifications are hints, never data: after a reconnect, or when a
slow subscriber's queue overflows, subscribers get a `Notice` whose payload is None and
re-read what they watch from the database, so nothing is lost across a database restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import select
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 10.0  # an idle connection is probed this often, so a dead server is noticed
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # back-off after a failed (re)connect, last one repeats
QUEUE_LIMIT = 1000  # notices a subscriber may have unread before it is told to re-read instead
LISTEN_WAIT_SECONDS = 5.0  # how long subscribe() waits for its LISTEN before relying on a later resync
APPLICATION_NAME = "appliance-pubsub"  # how the connection shows in pg_stat_activity


@dataclass(frozen=True)
class Notice:
    """A NOTIFY on `channel`; payload None means "notices may have been missed: re-read"."""

    channel: str
    payload: str | None

    @property
    def is_resync(self) -> bool:
        return self.payload is None


Deliver = Callable[[Notice], None]


class Subscription:
    """Notices for one channel, read by a thread with `get(timeout)`."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._queue: queue.Queue[Notice] = queue.Queue(QUEUE_LIMIT)

    def deliver(self, notice: Notice) -> None:
        try:
            self._queue.put_nowait(notice)
        except queue.Full:  # drop the backlog; one resync says the same thing
            with self._queue.mutex:
                self._queue.queue.clear()
            self._queue.put_nowait(Notice(self.channel, None))

    def get(self, timeout: float) -> Notice | None:
        """The next notice, or None when `timeout` seconds pass without one."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


class AsyncSubscription:
    """Notices for one channel, read by the event loop that subscribed with `await get(timeout)`."""

    def __init__(self, channel: str, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self._loop = loop
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(QUEUE_LIMIT)

    def deliver(self, notice: Notice) -> None:
        """Called from the listener thread: hand over to the subscriber's loop."""
        with suppress(RuntimeError):  # the loop closed meanwhile: nobody is left to tell
            self._loop.call_soon_threadsafe(self._put, notice)

    def _put(self, notice: Notice) -> None:
        if self._queue.full():
            while not self._queue.empty():
                self._queue.get_nowait()
            notice = Notice(self.channel, None)
        self._queue.put_nowait(notice)

    async def get(self, seconds: float) -> Notice | None:
        """The next notice, or None when `seconds` pass without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), seconds)
        except TimeoutError:
            return None


class PubSub:
    """The process's LISTEN connection; started by the first subscription, stopped by close()."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription | AsyncSubscription]] = {}
        self._listening: dict[str, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = -1, -1

    @contextmanager
    def subscribe(self, channel: str) -> Iterator[Subscription]:
        """Notices on `channel` from when LISTEN is active until the block ends (for threads)."""
        subscription = Subscription(channel)
        ready = self._add(channel, subscription)
        ready.wait(LISTEN_WAIT_SECONDS)
        try:
            yield subscription
        finally:
            self._remove(channel, subscription)

    @asynccontextmanager
    async def subscribe_async(self, channel: str) -> AsyncIterator[AsyncSubscription]:
        """Notices on `channel` for the running event loop, from when LISTEN is active."""
        subscription = AsyncSubscription(channel, asyncio.get_running_loop())
        ready = self._add(channel, subscription)
        if not ready.is_set():  # only the first subscriber of a channel waits for its LISTEN
            await asyncio.to_thread(ready.wait, LISTEN_WAIT_SECONDS)
        try:
            yield subscription
        finally:
            self._remove(channel, subscription)

    def _add(self, channel: str, subscription: Subscription | AsyncSubscription) -> threading.Event:
        with self._lock:
            self._ensure_thread()
            self._subscribers.setdefault(channel, set()).add(subscription)
            ready = self._listening.setdefault(channel, threading.Event())
        if not ready.is_set():
            self._wake()
        return ready

    def _remove(self, channel: str, subscription: Subscription | AsyncSubscription) -> None:
        with self._lock:
            self._subscribers.get(channel, set()).discard(subscription)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stopping.clear()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="pubsub-listener", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with suppress(BlockingIOError):  # the pipe is full: the listener is awake anyway
                os.write(self._wake_w, b"x")

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None or self._pid != os.getpid():
            return
        self._stopping.set()
        self._wake()
        thread.join(10)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r, self._wake_w = -1, -1

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, application_name=APPLICATION_NAME) as conn:
                    if failures:
                        log.info("pubsub_reconnected", extra={"attempts": failures})
                    failures = 0
                    self._serve(conn)
            except (psycopg.Error, OSError) as err:
                failures += 1
                if failures == 1:
                    log.warning("pubsub_disconnected", extra={"error": str(err).strip()})
            except Exception:  # a bug must not end the thread: subscribers would never be woken again
                failures += 1
                log.exception("pubsub_listener_failed")
            finally:
                for ready in self._channel_events():
                    ready.clear()
            self._stopping.wait(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS)) - 1] if failures else 0)

    def _serve(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        listened: set[str] = set()
        while not self._stopping.is_set():
            self._listen_new(conn, listened)
            for notify in conn.notifies(timeout=0):
                self._dispatch(Notice(notify.channel, notify.payload))
            readable, _, _ = select.select([conn.fileno(), self._wake_r], [], [], KEEPALIVE_SECONDS)
            if self._wake_r in readable:
                self._drain_wake_pipe()
            if not readable:
                conn.execute("SELECT 1")  # raises when the server went away without a word

    def _listen_new(self, conn: psycopg.Connection[tuple[object, ...]], listened: set[str]) -> None:
        """LISTEN on channels not yet listened on this connection, then tell their subscribers to re-read.

        The re-read covers what was committed while no LISTEN was active: before a reconnect, or
        before a subscriber that gave up waiting for its LISTEN (the database was down) read.
        """
        with self._lock:
            wanted = [c for c in self._listening if c not in listened]
        for channel in wanted:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            listened.add(channel)
            self._listening[channel].set()
            self._dispatch(Notice(channel, None))

    def _channel_events(self) -> list[threading.Event]:
        with self._lock:
            return list(self._listening.values())

    def _dispatch(self, notice: Notice) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(notice.channel, ()))
        for subscription in subscribers:
            subscription.deliver(notice)

    def _drain_wake_pipe(self) -> None:
        with suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
