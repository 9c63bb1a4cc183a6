"""/api/v2/debug/ws: a WebSocket that echoes every message, for the health report's websocket check (Coder's).

Authenticated: the health probe's token (appliance/relay/probe.py, so `appliance health --local`
needs no login) or any logged-in user's token or session cookie, checked as the API checks it.
"""

from __future__ import annotations

import asyncio
from functools import partial

from aiohttp import web

from appliance.gateway.auth import presented_token, require_subject
from appliance.gateway.errors import refuse_unsafe_target
from appliance.gateway.state import DATABASE, in_db
from appliance.relay.probe import HEADER, is_websocket_token, probe_secret

PATH = "/api/v2/debug/ws"
MAX_MESSAGE = 4096  # an echo needs little
ECHO_SECONDS = 30.0  # a probe sends one message; nobody holds this socket open


async def echo(request: web.Request) -> web.StreamResponse:
    refuse_unsafe_target(request)
    probe = request.headers.get(HEADER, "")
    if probe:
        secret = await asyncio.get_running_loop().run_in_executor(None, partial(probe_secret, request.app[DATABASE]))
        if not is_websocket_token(secret, probe):
            await in_db(request.app, require_subject, None)  # answers 401 as the API does
    else:
        await in_db(request.app, require_subject, presented_token(request))
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    try:
        async with asyncio.timeout(ECHO_SECONDS):
            async for message in ws:
                if message.type is web.WSMsgType.TEXT:
                    await ws.send_str(message.data)
                elif message.type is web.WSMsgType.BINARY:
                    await ws.send_bytes(message.data)
    except TimeoutError:
        pass
    await ws.close()
    return ws


def init_app(app: web.Application) -> None:
    app.router.add_get(PATH, echo, allow_head=False)
