"""The web terminal: a browser's WebSocket joined to a reconnecting PTY on the workspace's agent.

GET /api/v2/workspaceagents/{agent}/pty?reconnect=<id>&width=&height=[&command=] (the wire format is
appliance/sdk/terminal.py's). Before upgrading, the gateway authenticates the session cookie or Bearer
token, refuses a cookie sent from another origin (a WebSocket has no CSRF token: the Origin header is
the check), and pairs and logs in to the agent as that user (agent_link), so a user without connect
rights gets the API's 404/403, a stopped workspace its 409 with the Start hint, and an agent that has
not connected its 409, all as JSON before any upgrade. Then it runs subsystem appliance-rpty:<id> on a
PTY channel (appliance/agent/rpty.py) and copies keystrokes one way and output the other, every byte
through the relay, encrypted end to end. Closing the WebSocket detaches; the shell lives on for
5 minutes so a reload re-attaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import urlsplit

import asyncssh
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ValidationError

from appliance.errors import Forbidden, InvalidInput, OperatorError, RequestError
from appliance.gateway.agent_link import agent_session
from appliance.gateway.auth import presented_token
from appliance.gateway.errors import refuse_unsafe_target
from appliance.gateway.state import CONFIG
from appliance.relay.dial import RPTY_COMMAND_ENV, RPTY_PREFIX
from appliance.sdk.terminal import (
    CLOSE_AGENT_GONE,
    CLOSE_EXITED,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    MAX_MESSAGE_BYTES,
    TERMINAL_PATH,
    TerminalInput,
    TerminalQuery,
    TerminalResize,
)

log = logging.getLogger("appliance.gateway")

OUTPUT_CHUNK = 32 << 10
HEARTBEAT_SECONDS = 30.0  # WebSocket pings: proxies keep the connection open, dead browsers are found
# aiohttp drops a frame over this with a bare 1009; below it parse_message closes with a reason.
FRAME_LIMIT = 4 * MAX_MESSAGE_BYTES
REASON_BYTES = 123  # the most a close frame's reason may hold (RFC 6455 5.5)

Channel = asyncssh.SSHClientProcess[bytes]


class AgentUnreachable(RequestError):
    """Paired, but the relay or the agent did not answer: the gateway could not be the proxy it is."""

    status = 502


class Refused(Exception):
    """A browser message the terminal will not take: closes the WebSocket with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(request: web.Request) -> None:
    """A session cookie counts only from the console's own pages: a cross-site page could open this socket."""
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return  # a browser cannot put a token header on a WebSocket another site opens
    expected = _origin(request.app[CONFIG].access_url)
    if _origin(request.headers.get("Origin", "")) != expected:
        raise Forbidden(f"The terminal refuses a session cookie sent from origin "
                        f"{request.headers.get('Origin') or '(none)'}.",
                        f"Open the terminal from the console at {expected}, or send 'Authorization: Bearer <token>'.")


def _query(request: web.Request) -> TerminalQuery:
    try:
        return TerminalQuery.model_validate(dict(request.query))
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"Invalid query field '{name}': {first['msg']}.",
                           "Give reconnect (a UUID), width 1-1000 and height 1-1000.", field=name) from err


def parse_message(raw: str) -> TerminalInput | TerminalResize:
    """One browser frame as input or a resize, or Refused saying what is wrong with it."""
    if len(raw.encode()) > MAX_MESSAGE_BYTES:
        raise Refused(CLOSE_TOO_BIG, f"A message is larger than {MAX_MESSAGE_BYTES} bytes.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise Refused(CLOSE_POLICY, f"A message is not JSON: {err.msg}.") from err
    if not isinstance(value, dict):
        raise Refused(CLOSE_POLICY, 'Send {"data": "..."} or {"height": h, "width": w}.')
    model: type[BaseModel] = TerminalInput if "data" in value else TerminalResize
    try:
        return model.model_validate(value)  # type: ignore[return-value]
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"]) or "message"
        raise Refused(CLOSE_POLICY, f"{name}: {first['msg']}") from err


async def _open_channel(session_ssh: asyncssh.SSHClientConnection, query: TerminalQuery) -> Channel:
    env = {RPTY_COMMAND_ENV: query.command} if query.command else {}
    return await session_ssh.create_process(
        subsystem=RPTY_PREFIX + query.reconnect, term_type="xterm-256color", term_size=(query.width, query.height),
        encoding=None, env=env)


async def _to_browser(channel: Channel, ws: web.WebSocketResponse) -> tuple[int, str]:
    """Output until the channel ends: the shell's exit, or the session under it going away."""
    while data := await channel.stdout.read(OUTPUT_CHUNK):
        await ws.send_bytes(data)
    status = channel.exit_status
    if status is None:
        return CLOSE_AGENT_GONE, "The session to the workspace's agent ended; reconnect to try again."
    return CLOSE_EXITED, f"The shell exited with status {status}."


async def _from_browser(ws: web.WebSocketResponse, channel: Channel) -> tuple[int, str]:
    """Keystrokes and resizes until the browser leaves (detach) or sends what it may not."""
    async for message in ws:
        if message.type is WSMsgType.ERROR:
            return CLOSE_TOO_BIG, f"A message is larger than {MAX_MESSAGE_BYTES} bytes."
        if message.type is not WSMsgType.TEXT:
            return CLOSE_POLICY, "Send text frames of JSON; binary frames are not read."
        try:
            parsed = parse_message(message.data)
        except Refused as refused:
            return refused.code, refused.reason
        if isinstance(parsed, TerminalInput):
            channel.stdin.write(parsed.data.encode())
        else:
            channel.change_terminal_size(parsed.width, parsed.height)
    return WSCloseCode.OK, ""


async def _join(ws: web.WebSocketResponse, channel: Channel) -> tuple[int, str]:
    tasks = [asyncio.ensure_future(_to_browser(channel, ws)), asyncio.ensure_future(_from_browser(ws, channel))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return next(iter(done)).result()


async def terminal(request: web.Request) -> web.StreamResponse:
    refuse_unsafe_target(request)
    query = _query(request)
    if presented_token(request) is not None:
        check_origin(request)
    ws = web.WebSocketResponse(max_msg_size=FRAME_LIMIT, heartbeat=HEARTBEAT_SECONDS, autoclose=False)
    try:
        async with agent_session(request, request.match_info["agent"], kind="terminal") as session:
            channel = await _open_channel(session.ssh, query)
            await ws.prepare(request)
            await _serve(ws, channel)
    except OperatorError as err:  # the relay or the agent could not be reached, or went away
        if not ws.prepared:
            raise AgentUnreachable(err.message, err.hint) from err
        log.info("terminal_session_lost", extra={"reason": err.message})
    return ws


async def _serve(ws: web.WebSocketResponse, channel: Channel) -> None:
    code, reason = CLOSE_AGENT_GONE, "The gateway stopped."
    try:
        code, reason = await _join(ws, channel)
    except (asyncssh.Error, OSError) as err:
        log.info("terminal_session_lost", extra={"reason": str(err)})
    finally:
        channel.close()  # detach: the shell lives on for its reconnect id
        with contextlib.suppress(ConnectionResetError):
            await ws.close(code=code, message=_clip(reason))


def _clip(reason: str) -> bytes:
    encoded = reason.encode()
    return encoded if len(encoded) <= REASON_BYTES else encoded[:REASON_BYTES - 3] + b"..."


def init_app(app: web.Application) -> None:
    app.router.add_get(TERMINAL_PATH, terminal, allow_head=False)

