"""`appliance relay serve`'s own front (asyncio + h11): what it does beyond what nginx tests show.

test_behind_nginx.py runs the real process behind nginx for both upgrades, refusals and probes;
here the front runs on a TCP port of the test's loop so a raw socket can send it what nginx never
would: a malformed head, an oversized one, WebSocket control frames, an unmasked frame.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from appliance.db.database import Database
from appliance.relay import front
from appliance.relay.client import Packet, connect
from appliance.relay.service import build_service
from tests.support.postgres import free_port
from tests.support.relay import make_agent, vouch
from tests.support.server import make_config


@asynccontextmanager
async def lean_relay(conninfo: str, pki: Path) -> AsyncIterator[int]:
    """The front on 127.0.0.1:<port> with the relay service it serves, as `appliance relay serve` runs it."""
    db = Database(conninfo)
    port, stop = free_port(), asyncio.Event()
    loop = asyncio.get_running_loop()

    async def listen(factory: Callable[[], front.Connection]) -> asyncio.Server:
        return await loop.create_server(factory, "127.0.0.1", port)

    serving = asyncio.create_task(front.run(build_service(make_config(postgres_url=conninfo, pki_dir=pki), db),
                                            listen, stop))
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    try:
        yield port
    finally:
        stop.set()
        await serving
        db.close()


async def _raw(port: int, request: bytes, more: bytes = b"") -> bytes:
    """Send `request` (and `more` after the answer's head), return everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    if more:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(more)
    try:
        return await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body


WS_HEAD = (b"GET /derp HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: derp\r\nSec-WebSocket-Key: "
           + base64.b64encode(os.urandom(16)) + b"\r\n\r\n")


def test_bad_requests_get_a_status_and_a_reason_never_a_dropped_socket(relay_db: str, tmp_path: Path) -> None:
    async def scenario() -> dict[str, bytes]:
        async with lean_relay(relay_db, tmp_path / "pki") as port:
            return {
                "garbage": await _raw(port, b"\x16\x03\x01 not http at all\r\n\r\n"),
                "huge head": await _raw(port, b"GET /derp HTTP/1.1\r\nX-Big: " + b"a" * (64 << 10) + b"\r\n\r\n"),
                "elsewhere": await _raw(port, b"GET /api/v2/users HTTP/1.1\r\nHost: relay\r\n\r\n"),
                "no upgrade": await _raw(port, b"GET /derp HTTP/1.1\r\nHost: relay\r\n\r\n"),
                "post": await _raw(port, b"POST /derp HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n\r\n"),
                "probe": await _raw(port, b"HEAD /derp/latency-check HTTP/1.1\r\nHost: relay\r\n\r\n"),
                "old websocket": await _raw(port, WS_HEAD.replace(b"Version: 13", b"Version: 8")),
            }

    answers = asyncio.run(scenario())
    assert answers["garbage"].startswith(b"HTTP/1.1 400") and b"bad request" in answers["garbage"]
    assert answers["huge head"].startswith(b"HTTP/1.1 431") or answers["huge head"].startswith(b"HTTP/1.1 400")
    assert answers["elsewhere"].startswith(b"HTTP/1.1 404")
    body = json.loads(answers["elsewhere"].split(b"\r\n\r\n", 1)[1])
    assert body["message"] == "No relay endpoint GET /api/v2/users." and "/derp" in body["detail"]
    assert answers["no upgrade"].startswith(b"HTTP/1.1 426") and b"Upgrade: DERP" in answers["no upgrade"]
    assert answers["post"].startswith(b"HTTP/1.1 405")
    assert answers["probe"].startswith(b"HTTP/1.1 200") and b"Access-Control-Allow-Origin: *" in answers["probe"]
    old = answers["old websocket"]
    assert old.startswith(b"HTTP/1.1 400") and b"Sec-WebSocket-Version: 13" in old


def test_websocket_control_frames_ping_is_answered_text_and_unmasked_frames_close_with_a_code(
        relay_db: str, tmp_path: Path) -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        async with lean_relay(relay_db, tmp_path / "pki") as port:
            ping = await _raw(port, WS_HEAD, _masked(0x9, b"hello") + _masked(0x8, struct.pack("!H", 1000)))
            text = await _raw(port, WS_HEAD, _masked(0x1, b"a text message"))
            unmasked = await _raw(port, WS_HEAD, struct.pack("!BB", 0x82, 3) + b"abc")
            return ping, text, unmasked

    ping, text, unmasked = asyncio.run(scenario())
    # First the relay's ServerKey (a binary message), then our pong with the same payload.
    assert b"\x8a\x05hello" in ping
    assert b"\x88" in text and struct.pack("!H", 1003) in text and b"binary messages only" in text
    assert struct.pack("!H", 1002) in unmasked and b"must be masked" in unmasked


def test_a_paired_agent_and_client_exchange_a_megabyte_through_the_lean_front(relay_db: str, tmp_path: Path) -> None:
    agent = make_agent(relay_db)
    agent_key, client_key = vouch(relay_db, agent, "agent"), vouch(relay_db, agent, "client")
    payload = os.urandom(60_000)

    async def scenario() -> list[bytes]:
        async with lean_relay(relay_db, tmp_path / "pki") as port:
            url = f"http://127.0.0.1:{port}/derp"
            on_agent = await connect(url, agent_key)
            on_client = await connect(url, client_key, websocket=True)
            for _ in range(17):
                await on_client.send(agent_key.public, payload)
            received = []
            while len(received) < 17:
                event = await asyncio.wait_for(on_agent.recv(), 10)
                if isinstance(event, Packet):
                    received.append(event.data)
            await on_client.close()
            await on_agent.close()
            return received

    assert asyncio.run(scenario()) == [payload] * 17
