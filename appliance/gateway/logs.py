"""Build and import logs followed live as server-sent events, on the API's own URLs.

Wire format (what the console's build_logs.js and `appliance builds logs --follow` read):
`retry: 1000`, then one `log` event per line with `id: <log id>` and the line as JSON, comments
(`: keep-alive`) while the job is quiet, and an `end` event {"status", "error"} once it finished.
A reconnect with Last-Event-ID (or ?after=) resumes after that line. A stream ends after
STREAM_SECONDS and EventSource reconnects, so no connection outlives a token's revocation long.

Followers of one job share one JobFeed: it reads new lines once per NOTIFY on the logs channel
(db/pubsub.py) and every follower writes the same pre-rendered events, so a hundred followers
cost the database what one does.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiohttp import web

from appliance.db.database import Connection
from appliance.errors import InvalidInput
from appliance.gateway.auth import presented_token, require_subject
from appliance.gateway.errors import refuse_unsafe_target
from appliance.gateway.state import DATABASE, FALLBACK, in_db
from appliance.provisioner import jobs
from appliance.sdk.base import MAX_BIGINT, whole_number
from appliance.templates import service as templates
from appliance.workspaces import service as workspaces

log = logging.getLogger("appliance.gateway")

STREAM_SECONDS = 300.0  # then the client reconnects with Last-Event-ID (and is authenticated again)
KEEPALIVE_SECONDS = 15.0  # a comment on a quiet stream: proxies keep it open, dead clients are found
RESYNC_SECONDS = 15.0  # a feed re-reads this often even without a notice, in case one was lost
RETRY_SECONDS = 1.0  # a feed whose read failed (database restarting) tries again after this
TRUTHY = frozenset({"1", "true", "t", "yes", "y", "on"})  # what the API's `follow: bool` accepts as true


def sse_event(name: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n".encode()


@dataclass
class JobFeed:
    """One job's log as rendered events, grown by one reader, watched by any number of followers."""

    job_id: UUID
    ids: list[int] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    end: bytes | None = None
    followers: int = 0
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def last_id(self) -> int:
        return self.ids[-1] if self.ids else 0

    def since(self, after: int) -> tuple[bytes, int]:
        """Events after log id `after`, joined, and the id to continue from."""
        start = bisect.bisect_right(self.ids, after)
        if start == len(self.ids):
            return b"", after
        return b"".join(self.events[start:]), self.ids[-1]

    def add(self, rows: list[dict[str, Any]], job: jobs.Job | None) -> None:
        for row in rows:
            self.ids.append(row["id"])
            self.events.append(sse_event("log", jobs.log_line(row).model_dump(mode="json"), row["id"]))
        if job is None or job.finished:
            status = job.status.value if job else "missing"
            self.end = sse_event("end", {"status": status, "error": job.error if job else ""})
        if rows or self.end is not None:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def wait_for_change(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except TimeoutError:
            return False
        return True


def _read_new(conn: Connection, job_id: UUID, after: int) -> tuple[jobs.Job | None, list[dict[str, Any]]]:
    """The job first, then its lines: a job seen finished has all its lines committed before."""
    job = jobs.get(conn, job_id)
    rows: list[dict[str, Any]] = []
    while True:
        batch = jobs.logs_after(conn, job_id, after)
        rows += batch
        if len(batch) < 1000:
            return job, rows
        after = batch[-1]["id"]


class LogFeeds:
    """This process's feeds by job, woken by one subscription to the logs channel."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._feeds: dict[str, JobFeed] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="log-feeds-listener")
        await self._listening.wait()

    async def stop(self) -> None:
        tasks = [t for t in [self._listener, *(f.task for f in self._feeds.values())] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        async with self._app[DATABASE].pubsub.subscribe_async(jobs.LOGS_CHANNEL) as notices:
            self._listening.set()
            while True:
                notice = await notices.get(3600.0)
                if notice is None:
                    continue
                for job_id, feed in self._feeds.items():
                    if notice.is_resync or notice.payload == job_id:
                        feed.dirty.set()

    @asynccontextmanager
    async def watch(self, job_id: UUID) -> AsyncIterator[JobFeed]:
        feed = self._feeds.get(str(job_id))
        if feed is None:
            feed = self._feeds[str(job_id)] = JobFeed(job_id)
            feed.dirty.set()
            feed.task = asyncio.create_task(self._refresh(feed), name=f"log-feed-{job_id}")
        feed.followers += 1
        try:
            yield feed
        finally:
            feed.followers -= 1
            if feed.followers == 0 and self._feeds.get(str(job_id)) is feed:
                del self._feeds[str(job_id)]
                if feed.task is not None:
                    feed.task.cancel()

    async def _refresh(self, feed: JobFeed) -> None:
        while feed.end is None:
            with suppress(TimeoutError):
                await asyncio.wait_for(feed.dirty.wait(), RESYNC_SECONDS)
            feed.dirty.clear()
            try:
                job, rows = await in_db(self._app, _read_new, feed.job_id, feed.last_id)
            except Exception:  # the database may be restarting: followers wait, then the feed catches up
                log.warning("log_feed_read_failed", extra={"job_id": str(feed.job_id)}, exc_info=True)
                feed.dirty.set()
                await asyncio.sleep(RETRY_SECONDS)
                continue
            feed.add(rows, job)


FEEDS = web.AppKey("log_feeds", LogFeeds)


MAX_LOG_ID = MAX_BIGINT  # log ids are PostgreSQL bigints


def _log_id(raw: str, field: str) -> int:
    if (log_id := whole_number(raw, MAX_LOG_ID)) is not None:
        return log_id
    raise InvalidInput(f"{field}={raw!r} is not a log id.", f"Give a whole number from 0 to {MAX_LOG_ID}.",
                       field=field)


def _after(request: web.Request) -> int:
    """Last-Event-ID (a reconnecting EventSource sends back the id we wrote) or ?after=."""
    if resumed := request.headers.get("Last-Event-ID", ""):
        return _log_id(resumed, "Last-Event-ID")
    return _log_id(request.query.get("after", "0"), "after")


def wants_stream(request: web.Request) -> bool:
    """The same rule as the API (and nginx's map): ?follow=true, or Accept: text/event-stream."""
    return (request.query.get("follow", "").lower() in TRUTHY
            or "text/event-stream" in request.headers.get("Accept", ""))


async def stream(request: web.Request, job_id: UUID, after: int) -> web.StreamResponse:
    """Write the job's lines after `after` as they come, until it ends or STREAM_SECONDS pass."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})  # nginx must pass events through as they come
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_SECONDS
    async with request.app[FEEDS].watch(job_id) as feed:
        await response.prepare(request)
        try:
            await response.write(b"retry: 1000\n\n")
            while (left := deadline - loop.time()) > 0:
                chunk, after = feed.since(after)
                if chunk:
                    await response.write(chunk)
                elif feed.end is not None:
                    await response.write(feed.end)
                    break
                elif not await feed.wait_for_change(min(left, KEEPALIVE_SECONDS)):
                    await response.write(b": keep-alive\n\n")
        except ConnectionResetError:  # the follower went away
            return response
    return response


def _build_job(conn: Connection, token: str | None, build: str) -> UUID:
    subject = require_subject(conn, token)
    return workspaces.get_build(conn, subject, build).job.id


def _version_job(conn: Connection, token: str | None, version_id: str) -> UUID:
    subject = require_subject(conn, token)
    return templates.version_logs_for(conn, subject, version_id).job.id


async def _follow(request: web.Request, find_job: Callable[[Connection, str | None, str], UUID],
                  key: str) -> web.StreamResponse:
    """Stream the logs of the job `find_job` authorizes for this caller; a plain read goes to the WSGI app."""
    if not wants_stream(request):
        return await request.app[FALLBACK](request)
    refuse_unsafe_target(request)
    after = _after(request)
    job_id = await in_db(request.app, find_job, presented_token(request), request.match_info[key])
    return await stream(request, job_id, after)


async def build_logs(request: web.Request) -> web.StreamResponse:
    return await _follow(request, _build_job, "build")


async def version_logs(request: web.Request) -> web.StreamResponse:
    return await _follow(request, _version_job, "version_id")


async def _feeds_lifetime(app: web.Application) -> AsyncIterator[None]:
    feeds = app[FEEDS]
    await feeds.start()
    yield
    await feeds.stop()


def init_app(app: web.Application) -> None:
    app[FEEDS] = LogFeeds(app)
    app.cleanup_ctx.append(_feeds_lifetime)
    app.router.add_get("/api/v2/workspacebuilds/{build}/logs", build_logs, allow_head=False)
    app.router.add_get("/api/v2/templateversions/{version_id}/logs", version_logs, allow_head=False)
