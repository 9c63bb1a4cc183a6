"""The Upgrade page's two streams of server-sent events (docs/adr/0039), owners only.

GET /admin/upgrade/{upload_id}/verification: verifies an uploaded bundle on a thread (hashing a
300 MB bundle takes seconds: never on a WSGI worker), sending `progress` {"done", "total"} while
it reads, then `verified` (the UpgradeReport) or `rejected` {"message", "hint"} and the end. Followers
of one upload share one verification, which finishes (and writes its report) if they all leave.

GET /admin/upgrade/progress: the apply request and the installer's journal as they change, one
`progress` event {"request", "journal"} per change, comments while nothing does. The journal is
the installer's own JSON (installer/journal.py), passed through for upgrade.js to show.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from appliance import upgrades
from appliance.auth.rbac import Action, Resource, ResourceType, authorize
from appliance.db.database import Connection
from appliance.errors import RequestError
from appliance.gateway.auth import presented_token, require_subject
from appliance.gateway.errors import refuse_unsafe_target
from appliance.gateway.logs import KEEPALIVE_SECONDS, STREAM_SECONDS, sse_event
from appliance.gateway.state import CONFIG, in_db
from appliance.sdk.upgrades import UpgradeReport
from bundles.errors import BundleError

log = logging.getLogger("appliance.gateway")

POLL_SECONDS = 0.5  # how often a stream looks at the verification's progress, the request and the journal


@dataclass
class Verification:
    total: int
    done: list[int] = field(default_factory=lambda: [0])  # grown by the verifying thread
    task: asyncio.Future[UpgradeReport] | None = None


VERIFICATIONS = web.AppKey("upgrade_verifications", dict[str, Verification])


def _owner(conn: Connection, token: str | None) -> None:
    authorize(require_subject(conn, token), Action.UPDATE, Resource(ResourceType.DEPLOYMENT))


async def _stream(request: web.Request) -> web.StreamResponse:
    refuse_unsafe_target(request)
    await in_db(request.app, _owner, presented_token(request))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    return response


async def _start(app: web.Application, upload_id: str) -> Verification:
    running = app[VERIFICATIONS]
    if upload_id in running:
        return running[upload_id]
    config = app[CONFIG]
    bundle = upgrades.bundle_path(config.upgrade_spool_dir, upload_id)
    applied = await in_db(app, upgrades.applied_migrations)
    if upload_id in running:  # another follower started it while the database answered
        return running[upload_id]
    verification = running[upload_id] = Verification(bundle.stat().st_size)

    def advance(size: int) -> None:
        verification.done[0] += size

    verification.task = asyncio.get_running_loop().run_in_executor(
        None, upgrades.verify_upload, config, upload_id, applied, advance)
    verification.task.add_done_callback(lambda _: running.pop(upload_id, None))
    return verification


def _outcome(task: asyncio.Future[UpgradeReport]) -> bytes:
    try:
        return sse_event("verified", task.result().model_dump(mode="json"))
    except BundleError as err:
        return sse_event("rejected", {"message": err.message, "hint": err.hint})
    except RequestError as err:  # deleted meanwhile
        return sse_event("rejected", {"message": err.message, "hint": err.detail})


async def verification(request: web.Request) -> web.StreamResponse:
    upload_id = request.match_info["upload_id"]
    spool = request.app[CONFIG].upgrade_spool_dir
    report = upgrades.read_report(spool, upload_id)  # NotFound before the stream starts
    response = await _stream(request)
    if report is not None:
        await response.write(sse_event("verified", report.model_dump(mode="json")))
        return response
    running = await _start(request.app, upload_id)
    assert running.task is not None
    try:
        while not running.task.done():
            await response.write(sse_event("progress", {"done": running.done[0], "total": running.total}))
            await asyncio.wait([running.task], timeout=POLL_SECONDS)
        await response.write(_outcome(running.task))
    except ConnectionResetError:  # the page went away; the verification still finishes and keeps its report
        pass
    return response


def _progress_state(request: web.Request) -> dict[str, Any]:
    config = request.app[CONFIG]
    pending = upgrades.pending_request(config.upgrade_spool_dir)
    return {"request": pending.model_dump(mode="json") if pending else None,
            "journal": upgrades.read_installer_json(config.upgrade_journal)}


async def progress(request: web.Request) -> web.StreamResponse:
    response = await _stream(request)
    loop = asyncio.get_running_loop()
    deadline, quiet_since, last = loop.time() + STREAM_SECONDS, loop.time(), b""
    try:
        while loop.time() < deadline:
            event = sse_event("progress", _progress_state(request))
            if event != last:
                await response.write(event)
                last, quiet_since = event, loop.time()
            elif loop.time() - quiet_since > KEEPALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")
                quiet_since = loop.time()
            await asyncio.sleep(POLL_SECONDS)
    except ConnectionResetError:
        pass
    return response


def init_app(app: web.Application) -> None:
    app[VERIFICATIONS] = {}
    app.router.add_get("/admin/upgrade/progress", progress, allow_head=False)
    app.router.add_get("/admin/upgrade/{upload_id:[0-9a-f]{16}}/verification", verification, allow_head=False)
