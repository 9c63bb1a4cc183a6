"""websocket: can a WebSocket to the gateway be opened at the access URL, and does it echo (Coder's EWS01, EWS02)?"""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp

from appliance.health.context import HealthContext, finding, section, skipped
from appliance.relay.probe import HEADER, probe_secret, websocket_token
from appliance.sdk.health import HealthSection, Severity

PATH = "/api/v2/debug/ws"  # appliance/gateway/debug.py
TIMEOUT = 5.0


async def check(ctx: HealthContext) -> HealthSection:
    if not ctx.has_database or ctx.db is None:
        return skipped()
    token = websocket_token(await asyncio.to_thread(probe_secret, ctx.db))
    url = ctx.config.access_url + PATH
    message = os.urandom(16).hex()
    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                session.ws_connect(url, headers={HEADER: token}, ssl=ctx.ssl_context() or False) as ws:
            await ws.send_str(message)
            reply = await ws.receive(timeout=TIMEOUT)
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        return section([finding("EWS01", Severity.ERROR, f"A WebSocket to {url} cannot be opened "
                                f"({err or type(err).__name__}). Check the gateway runs (systemctl status "
                                "appliance-gateway) and that the proxy passes the Upgrade header.")], url=url)
    details = {"url": url, "round_trip_ms": round((time.perf_counter() - started) * 1000, 2)}
    if reply.type is not aiohttp.WSMsgType.TEXT or reply.data != message:
        return section([finding("EWS02", Severity.ERROR, f"The WebSocket echo at {url} came back wrong "
                                f"({reply.type.name}). A proxy in front changes WebSocket frames; let them pass.")],
                       **details)
    return section(**details)
