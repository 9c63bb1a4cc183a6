"""Workspace apps by path: /@owner/workspace[.agent]/apps/slug/... proxied into the workspace (docs/adr/0031).

Each request is authorized on its own (appliance.workspaces.apps: the owner and site owners, or any
logged-in user for a shared app; everyone else a 404), then forwarded over an SSH session to the
agent through the relay. Sessions are pooled per (user, agent) and closed after IDLE_SECONDS without
a request; each app port gets a unix socket in a private 0700 folder that asyncssh forwards to the
port (direct-tcpip), and one aiohttp client on that socket carries HTTP and WebSocket alike.

The app sees its own paths: the prefix is stripped and sent as X-Forwarded-Prefix; a redirect to
"/x" (or to its own loopback URL) comes back as prefix + "/x". The console's session cookie and any
Authorization header never reach the app, and an app cannot set the console's cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import aiohttp
import asyncssh
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from appliance.auth.web import SESSION_COOKIE
from appliance.db.database import Connection
from appliance.errors import OperatorError, RequestError, Unauthorized
from appliance.gateway.agent_link import agent_session
from appliance.gateway.auth import presented_token, require_subject
from appliance.gateway.errors import error_response, refuse_unsafe_target
from appliance.gateway.proxy import CONNECT_SECONDS, HOP_BY_HOP, forwarded_headers
from appliance.gateway.state import in_db
from appliance.metrics.websockets import is_websocket
from appliance.relay.dial import Session
from appliance.sdk.agents import LOOPBACK_HOSTS
from appliance.workspaces.apps import AppTarget, find_app

log = logging.getLogger("appliance.gateway")

ROUTE = r"/@{owner}/{target}/apps/{slug}{rest:[\s\S]*}"
IDLE_SECONDS = 60.0  # a pooled session without a request for this long is closed
REAP_SECONDS = 10.0
CONSOLE_COOKIES = frozenset({SESSION_COOKIE, "appliance_csrf"})  # never sent to an app, never set by one
WEBSOCKET_HEADERS = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                               "sec-websocket-protocol"})  # the upstream handshake makes its own
# Another user's app runs in an opaque origin: its scripts cannot use the viewer's console session.
SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"


@dataclass(eq=False)
class Pooled:
    """One user's SSH session to one agent, and a client per app port forwarded over it."""

    stack: contextlib.AsyncExitStack
    session: Session
    run_dir: Path
    clients: dict[int, aiohttp.ClientSession] = field(default_factory=dict)
    last_used: float = 0.0
    busy: int = 0

    def is_dead(self) -> bool:
        return self.session.ssh.is_closed()

    async def client(self, target: AppTarget) -> aiohttp.ClientSession:
        if (client := self.clients.get(target.port)) is None:
            path = self.run_dir / f"{target.port}.sock"
            listener = await self.session.ssh.forward_local_path_to_port(str(path), target.host, target.port)
            self.stack.callback(listener.close)
            client = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(path)), cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS))
            self.clients[target.port] = client
        return client

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        with contextlib.suppress(OperatorError, OSError, asyncssh.Error):
            await self.stack.aclose()
        shutil.rmtree(self.run_dir, ignore_errors=True)


class AppSessions:
    """The pool: one session per (user, agent), opened on first use, dropped when dead or idle."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[UUID, UUID], Pooled] = {}
        self._locks: dict[tuple[UUID, UUID], asyncio.Lock] = {}

    async def acquire(self, request: web.Request, user_id: UUID, target: AppTarget) -> Pooled:
        key = (user_id, target.agent.id)
        async with self._locks.setdefault(key, asyncio.Lock()):
            pooled = self.sessions.get(key)
            if pooled is not None and pooled.is_dead():
                await self.drop(key, pooled)
                pooled = None
            if pooled is None:
                pooled = await _open(request, target)
                self.sessions[key] = pooled
            pooled.busy += 1
            pooled.last_used = asyncio.get_running_loop().time()
            return pooled

    def release(self, pooled: Pooled) -> None:
        pooled.busy -= 1
        pooled.last_used = asyncio.get_running_loop().time()

    async def drop(self, key: tuple[UUID, UUID], pooled: Pooled) -> None:
        if self.sessions.get(key) is pooled:
            del self.sessions[key]
        await pooled.close()

    async def reap(self) -> None:
        """Close sessions idle for IDLE_SECONDS, until cancelled."""
        while True:
            await asyncio.sleep(REAP_SECONDS)
            now = asyncio.get_running_loop().time()
            for key, pooled in list(self.sessions.items()):
                if pooled.busy == 0 and (now - pooled.last_used > IDLE_SECONDS or pooled.is_dead()):
                    await self.drop(key, pooled)

    async def close_all(self) -> None:
        for key, pooled in list(self.sessions.items()):
            await self.drop(key, pooled)


SESSIONS = web.AppKey("app_sessions", AppSessions)


async def _open(request: web.Request, target: AppTarget) -> Pooled:
    stack = contextlib.AsyncExitStack()
    shared = None if target.is_owner else target.slug
    try:
        session = await stack.enter_async_context(agent_session(request, str(target.agent.id), "app",
                                                                shared_app=shared))
    except BaseException:
        await stack.aclose()
        raise
    return Pooled(stack, session, Path(tempfile.mkdtemp(prefix="appliance-apps-")))  # 0700, this user's only


# --- the handler ---

def _resolve(conn: Connection, token: str | None, owner: str, target: str, slug: str) -> tuple[UUID, AppTarget]:
    subject = require_subject(conn, token)
    return subject.user_id, find_app(conn, subject, owner, target, slug)


def _prefix(request: web.Request) -> str:
    """/@owner/target/apps/slug as the browser wrote it (still percent-encoded)."""
    return "/".join(request.raw_path.split("?", 1)[0].split("/")[:5])


async def app_request(request: web.Request) -> web.StreamResponse:
    refuse_unsafe_target(request)
    info = request.match_info
    prefix = _prefix(request)
    path, _, query = request.raw_path.partition("?")
    rest = path[len(prefix):]
    if not rest:  # the app's root is a folder: relative links resolve under the prefix
        raise web.HTTPTemporaryRedirect(prefix + "/" + (f"?{query}" if query else ""))
    sessions = request.app[SESSIONS]
    for retry in (not request.body_exists, False):  # a request without a body is tried again on a new session
        try:
            user_id, target = await in_db(request.app, _resolve, presented_token(request), info["owner"],
                                          info["target"], info["slug"])
            pooled = await sessions.acquire(request, user_id, target)
        except Unauthorized as err:
            if _wants_html(request) and request.method in ("GET", "HEAD"):
                raise web.HTTPSeeOther(URL("/login").with_query(next=request.path_qs)) from err
            return _failure(request, err.status, err.message, err.detail)
        except RequestError as err:
            return _failure(request, err.status, err.message, err.detail)
        except OperatorError as err:
            return _failure(request, 502, err.message, err.hint)
        try:
            return await _forward(request, pooled, target, prefix, rest, query, retry=retry)
        except SessionDied:
            log.info("app_session_reopened", extra={"agent_id": str(target.agent.id), "slug": target.slug})
        finally:
            sessions.release(pooled)
    raise AssertionError("unreachable: the last attempt does not retry")


class SessionDied(Exception):
    """The pooled session was dead before the request got anywhere: the next acquire opens a new one."""


async def _forward(request: web.Request, pooled: Pooled, target: AppTarget, prefix: str, rest: str,
                   query: str, *, retry: bool) -> web.StreamResponse:
    url = URL(f"{target.scheme}://{target.netloc}{target.base_path}{rest}" + (f"?{query}" if query else ""),
              encoded=True)
    try:
        client = await pooled.client(target)
        if is_websocket(request):
            return await _websocket(request, client, url, _upstream_headers(request, target, prefix, websocket=True))
        return await _http(request, client, url, target, prefix)
    except (aiohttp.ClientError, asyncssh.Error, OSError) as err:
        if retry and pooled.is_dead():
            raise SessionDied from err
        return await _unreachable(request, pooled, target, err)


async def _unreachable(request: web.Request, pooled: Pooled, target: AppTarget, err: Exception) -> web.StreamResponse:
    """Why the app did not answer: nothing listening (asked of the agent), or the session itself died."""
    if not pooled.is_dead():
        try:
            _, writer = await pooled.session.ssh.open_connection(target.host, target.port)
            writer.close()
        except asyncssh.ChannelOpenError:
            return _failure(request, 502, f"Nothing listens on port {target.port} inside the workspace "
                                          f"({target.agent.target}, app {target.slug!r}).",
                            "Start the app in the workspace (the template's startup script usually does), "
                            "then reload.")
        except (asyncssh.Error, OSError):
            pass
    log.info("app_unreachable", extra={"agent_id": str(target.agent.id), "slug": target.slug, "error": str(err)})
    return _failure(request, 502, f"App {target.slug!r} of {target.agent.target} did not answer: "
                                  f"{err or type(err).__name__}.",
                    "The workspace's agent or the relay may have restarted; reload the page.")


def _upstream_headers(request: web.Request, target: AppTarget, prefix: str, *, websocket: bool = False
                      ) -> CIMultiDict[str]:
    headers = forwarded_headers(request)
    for name in ("Authorization", "Cookie", "Host", *(WEBSOCKET_HEADERS if websocket else ())):
        headers.popall(name, None)
    kept = [pair.strip() for line in request.headers.getall("Cookie", []) for pair in line.split(";")
            if pair.strip() and pair.split("=", 1)[0].strip() not in CONSOLE_COOKIES]
    if kept:
        headers["Cookie"] = "; ".join(kept)
    headers["Host"] = target.netloc
    headers["X-Forwarded-Prefix"] = prefix
    return headers


async def _http(request: web.Request, client: aiohttp.ClientSession, url: URL, target: AppTarget,
                prefix: str) -> web.StreamResponse:
    upstream = await client.request(request.method, url, headers=_upstream_headers(request, target, prefix),
                                    data=request.content if request.body_exists else None, allow_redirects=False)
    async with upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower == "content-length" or _sets_console_cookie(lower, value):
                continue
            response.headers.add(name, _location(value, target, prefix) if lower == "location" else value)
        if not target.is_owner:
            response.headers.add("Content-Security-Policy", SANDBOX)
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, asyncssh.Error, OSError) as err:
            # Mid-body (the app or the browser went away): the status is sent, so the only honest end is a
            # cut connection, never a short 200.
            log.info("app_response_cut", extra={"slug": target.slug, "error": str(err)})
            if request.transport is not None:
                request.transport.abort()
    return response


def _sets_console_cookie(lower_name: str, value: str) -> bool:
    return lower_name == "set-cookie" and value.split("=", 1)[0].strip() in CONSOLE_COOKIES


def _location(value: str, target: AppTarget, prefix: str) -> str:
    """A redirect to the app's own root-relative path (or its loopback URL) kept under the prefix."""
    parts = urlsplit(value)
    if parts.netloc:
        try:
            own = parts.hostname in LOOPBACK_HOSTS and (parts.port or target.port) == target.port
        except ValueError:
            own = False
        if not own:
            return value
    path = parts.path
    if not path.startswith("/") or path.startswith(prefix + "/"):
        return value
    if target.base_path and (path == target.base_path or path.startswith(target.base_path + "/")):
        path = path[len(target.base_path):] or "/"
    return urlunsplit(("", "", prefix + path, parts.query, parts.fragment))


async def _websocket(request: web.Request, client: aiohttp.ClientSession, url: URL,
                     headers: CIMultiDict[str]) -> web.StreamResponse:
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    try:
        upstream = await client.ws_connect(url, headers=headers, protocols=protocols, max_msg_size=0)
    except aiohttp.WSServerHandshakeError as err:
        return _failure(request, 502, f"The app refused the WebSocket: {err.status} {err.message}.",
                        "Check the app's WebSocket path.")
    try:
        browser = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0)
        await browser.prepare(request)
        with contextlib.suppress(aiohttp.ClientError, asyncssh.Error, OSError):  # either side went away
            await asyncio.gather(_pipe(browser, upstream), _pipe(upstream, browser))
            await browser.close()
    finally:
        await upstream.close()
    return browser


Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pipe(source: Socket, sink: Socket) -> None:
    """Messages from `source` to `sink` until either closes; a close goes on with its code."""
    async for message in source:
        if message.type is WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
            break
    code = source.close_code or 0
    code = code if 1000 <= code <= 1003 or code >= 3000 else aiohttp.WSCloseCode.OK  # 1005/1006 are never sent
    with contextlib.suppress(ConnectionError, RuntimeError):
        await sink.close(code=code)


# --- errors a browser reads ---

def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{message}</p><p>{hint}</p><p><a href="/workspaces">Your workspaces</a></p></body></html>
"""


def _failure(request: web.Request, status: int, message: str, hint: str) -> web.Response:
    """What a browser reads (a small page) or a client parses (the API's JSON)."""
    if not _wants_html(request):
        return error_response(status, message, hint)
    body = PAGE.format(title=f"App unavailable ({status})", message=html.escape(message), hint=html.escape(hint))
    return web.Response(status=status, text=body, content_type="text/html", headers={
        "Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'"})


# --- wiring ---

def init_app(app: web.Application) -> None:
    """Mount /@owner/target/apps/slug...; the pool's reaper lives as long as the app."""
    app[SESSIONS] = AppSessions()
    app.router.add_route("*", ROUTE, app_request)
    app.cleanup_ctx.append(_pool_lifetime)


async def _pool_lifetime(app: web.Application) -> Any:
    reaper = asyncio.create_task(app[SESSIONS].reap(), name="app-sessions-reaper")
    yield
    reaper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reaper
    await app[SESSIONS].close_all()
