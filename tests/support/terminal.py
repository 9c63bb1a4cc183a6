"""A web-terminal client as the console's terminal.js is one: aiohttp WebSocket, JSON frames in, bytes out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from appliance.auth.web import SESSION_COOKIE
from appliance.sdk.terminal import TERMINAL_PATH


@dataclass
class WebTerminal:
    ws: aiohttp.ClientWebSocketResponse
    text: str = ""
    closed: tuple[int | None, str] | None = field(default=None)

    async def type(self, keys: str) -> None:
        await self.ws.send_str(json.dumps({"data": keys}))

    async def resize(self, width: int, height: int) -> None:
        await self.ws.send_str(json.dumps({"height": height, "width": width}))

    async def until(self, pattern: str, within: float = 15.0) -> re.Match[str]:
        """Read output until `pattern` matches what this terminal has shown so far."""
        async def read() -> re.Match[str]:
            while not (found := re.search(pattern, self.text)):
                message = await self.ws.receive()
                if message.type is not aiohttp.WSMsgType.BINARY:
                    raise AssertionError(f"the terminal closed before {pattern!r}: {message}; it showed {self.text!r}")
                self.text += message.data.decode(errors="replace")
            return found
        return await asyncio.wait_for(read(), within)

    async def close_reason(self, within: float = 15.0) -> tuple[int | None, str]:
        """Skip output until the server closes; its close code and reason."""
        async def wait() -> tuple[int | None, str]:
            while True:
                message = await self.ws.receive()
                if message.type is aiohttp.WSMsgType.BINARY:
                    self.text += message.data.decode(errors="replace")
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return self.ws.close_code, str(message.extra or "")
        return await asyncio.wait_for(wait(), within)


def terminal_url(base: str, agent_id: str, reconnect: str | None = None, width: int = 80, height: int = 24,
                 **extra: str) -> str:
    query = {"reconnect": reconnect or str(uuid.uuid4()), "width": str(width), "height": str(height), **extra}
    return base.rstrip("/") + TERMINAL_PATH.format(agent=agent_id) + "?" + "&".join(
        f"{k}={v}" for k, v in query.items())


@contextlib.asynccontextmanager
async def web_terminal(url: str, *, token: str, origin: str | None, cookie: bool = True) -> AsyncIterator[WebTerminal]:
    """Open the terminal WebSocket with the session cookie (and an Origin) as a browser does, or a Bearer token."""
    headers = {"Origin": origin} if origin else {}
    cookies = {SESSION_COOKIE: token} if cookie else {}
    if not cookie:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession(cookies=cookies) as http, http.ws_connect(url, headers=headers,
                                                                               autoclose=False) as ws:
        yield WebTerminal(ws)
