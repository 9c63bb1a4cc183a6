"""The embedded front's fallback: every request the gateway does not serve goes to the WSGI app.

Bodies stream both ways (a template upload, a state download) and the front appends the peer it
saw to X-Forwarded-For/-Proto/-Host; the app's FrontHop takes that entry back as REMOTE_ADDR and
scheme, so proxy_trusted_hops means the same as under gunicorn behind nginx.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from appliance.gateway.errors import error_response

# RFC 9110 section 7.6.1: headers for one connection, never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "proxy-connection"})
CONNECT_SECONDS = 10.0
READ_SECONDS = 330.0  # above waitress's channel_timeout (300 s): the app gives up first and says so


def _appended(headers: CIMultiDict[str], name: str, value: str) -> None:
    earlier = headers.getall(name, [])
    headers[name] = ", ".join([*earlier, value])


def forwarded_headers(request: web.Request) -> CIMultiDict[str]:
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
    _appended(headers, "X-Forwarded-For", request.remote or "")
    _appended(headers, "X-Forwarded-Proto", request.scheme)
    _appended(headers, "X-Forwarded-Host", request.host)
    return headers


class WsgiProxy:
    """Forwards requests to the WSGI server listening on a unix socket only this process can open."""

    def __init__(self, socket_path: Path) -> None:
        self._socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self._socket_path), limit=64),
            cookie_jar=aiohttp.DummyCookieJar(),  # Set-Cookie is the browser's, never kept here
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS, sock_read=READ_SECONDS))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None, "WsgiProxy.open() runs at the front's startup"
        try:
            upstream = await self._session.request(
                request.method, URL("http://appliance" + request.raw_path, encoded=True),
                headers=forwarded_headers(request), data=request.content if request.body_exists else None,
                allow_redirects=False)
        except aiohttp.ClientError as err:
            return error_response(502, "The console and API did not answer the front.",
                                  f"{err}. The server log says why; restart `appliance server` if it persists.")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        return response
