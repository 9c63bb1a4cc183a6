"""derp (the relay): do two real relay clients exchange a message, over DERP and over its WebSocket fallback?

The two clients are the health probe's pair (appliance/relay/probe.py): keys minted from a site
secret that the relay admits as a pair of their own, so the check needs no workspace. One sends a
random message, the other echoes it, and the round trip is measured on each transport (Coder's
EDERP01 when only the WebSocket fallback works, EDERP02 when neither does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time

from appliance.health.context import HealthContext, finding, section, skipped
from appliance.relay.client import DerpClient, Packet, RelayClosed, connect
from appliance.relay.dial import relay_url
from appliance.relay.keys import NodeKey
from appliance.relay.probe import probe_keys, probe_secret
from appliance.sdk.health import HealthSection, Severity

TIMEOUT = 5.0  # seconds for each transport's connect and round trip


async def check(ctx: HealthContext) -> HealthSection:
    if not ctx.has_database or ctx.db is None:
        return skipped()
    secret = await asyncio.to_thread(probe_secret, ctx.db)
    url, context = relay_url(ctx.config.access_url), ctx.ssl_context()
    sender, echoer = probe_keys(secret)
    derp, derp_error = await _measure(url, sender, echoer, context, websocket=False)
    websocket, websocket_error = await _measure(url, sender, echoer, context, websocket=True)
    details = {"url": url, "round_trip_ms": derp, "websocket_round_trip_ms": websocket,
               "uses_websocket": derp is None and websocket is not None}
    if derp is None and websocket is None:
        return section([finding("EDERP02", Severity.ERROR, f"The relay at {url} cannot exchange messages between "
                                f"two peers ({derp_error}). Check the relay runs: systemctl status appliance-relay; "
                                "then its journal.")], **details)
    if derp is None:
        return section([finding("EDERP01", Severity.WARNING, f"The relay works only through its WebSocket fallback "
                                f"({derp_error}): a proxy in front drops 'Upgrade: DERP'. Let it pass the Upgrade "
                                "header for /derp.")], **details)
    if websocket is None:
        details["websocket_error"] = websocket_error
    return section(**details)


async def _measure(url: str, sender: NodeKey, echoer: NodeKey, context: ssl.SSLContext | None, *,
                   websocket: bool) -> tuple[float | None, str]:
    """The round trip in ms, or None and why not."""
    clients: list[DerpClient] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            for key in (sender, echoer):
                clients.append(await connect(url, key, ssl=context, websocket=websocket, timeout=TIMEOUT))
            return await _round_trip(clients[0], clients[1], echoer.public, sender.public), ""
    except (RelayClosed, OSError, TimeoutError, ValueError) as err:
        return None, str(err) or type(err).__name__
    except Exception as err:  # aiohttp's and h11's errors: the relay did not answer as a relay
        return None, f"{type(err).__name__}: {err}"
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


async def _round_trip(a: DerpClient, b: DerpClient, b_key: bytes, a_key: bytes) -> float:
    message = os.urandom(32)
    started = time.perf_counter()
    await a.send(b_key, message)
    await b.send(a_key, await _next_packet(b))
    if await _next_packet(a) != message:
        raise ValueError("the echo came back changed")
    return round((time.perf_counter() - started) * 1000, 2)


async def _next_packet(client: DerpClient) -> bytes:
    while True:
        event = await client.recv()
        if isinstance(event, Packet):
            return event.data
