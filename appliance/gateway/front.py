"""The embedded front of `appliance server`: ONE public port for the gateway and the WSGI app.

The gateway's event loop owns the public listeners (HTTP, and HTTPS when configured) and serves
long-lived requests itself; everything else is proxied to waitress on a unix socket in a private
temporary folder (0700, socket 0600), so no other local user can reach the app around the front
and forge X-Forwarded-For. The loop runs on its own thread; the caller's thread keeps signals.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from wsgiref.types import WSGIApplication

from aiohttp import web
from waitress.server import create_server

from appliance.config import Address, ServerConfig
from appliance.db.database import Database
from appliance.errors import OperatorError
from appliance.gateway.app import create_gateway
from appliance.gateway.proxy import WsgiProxy

log = logging.getLogger("appliance.gateway")

WSGI_THREADS = 16  # API requests only: long-lived follows stay on the event loop
START_SECONDS = 30.0


@dataclass(frozen=True)
class TlsSettings:
    address: Address
    cert_file: Path
    key_file: Path

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class EmbeddedFront:
    def __init__(self, config: ServerConfig, db: Database, wsgi_app: WSGIApplication, listener: socket.socket,
                 tls: TlsSettings | None = None) -> None:
        self._config, self._db, self._wsgi_app = config, db, wsgi_app
        self._listener, self._tls = listener, tls
        self._tls_context: ssl.SSLContext | None = None
        self._run_dir = Path(tempfile.mkdtemp(prefix="appliance-front-"))  # 0700, this user's only
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._proxy = WsgiProxy(self._run_dir / "wsgi.sock")
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._wsgi = create_server(wsgi_app, unix_socket=str(self._run_dir / "wsgi.sock"), unix_socket_perms="600",
                                   threads=WSGI_THREADS, ident="appliance", channel_timeout=300,
                                   # Each route bounds its own body; this only must not be the lower bound
                                   # for a bundle upload (upgrade_max_bundle_mb, console/upgrades.py).
                                   max_request_body_size=max(1 << 30, (config.upgrade_max_bundle_mb + 1) << 20),
                                   # The front appends to X-Forwarded-*; the app's FrontHop takes its entry back.
                                   clear_untrusted_proxy_headers=False)

    def start(self) -> None:
        """Serve: waitress and the event loop on threads; raises OperatorError if a listener cannot bind."""
        for name, target in (("wsgi", self._serve_wsgi), ("front", self._loop.run_forever)):
            thread = threading.Thread(target=target, name=f"appliance-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        asyncio.run_coroutine_threadsafe(self._start_sites(), self._loop).result(START_SECONDS)

    async def _start_sites(self) -> None:
        await self._proxy.open()
        app = create_gateway(self._config, self._db, fallback=self._proxy.forward)
        # [\s\S], not `.`: a path holding a newline must reach the app too, which refuses it with a 400.
        app.router.add_route("*", r"/{path:[\s\S]*}", self._proxy.forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=3.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._listener).start()
        if self._tls is not None:
            self._tls_context = self._tls.context()
            site = web.TCPSite(self._runner, self._tls.address.host, self._tls.address.port,
                               ssl_context=self._tls_context, reuse_address=True)
            try:
                await site.start()
            except OSError as err:
                raise OperatorError(f"Cannot listen on {self._tls.address} for HTTPS: {err.strerror}.",
                                    "Stop the process using that port, or pass another --tls-address.") from err

    def reload_certificate(self) -> None:
        """New connections get the renewed certificate; open ones keep theirs."""
        if self._tls is not None and self._tls_context is not None:
            self._tls_context.load_cert_chain(self._tls.cert_file, self._tls.key_file)
            log.info("tls_certificate_reloaded", extra={"cert": str(self._tls.cert_file)})

    async def _stop_sites(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._proxy.close()

    def _serve_wsgi(self) -> None:
        try:
            self._wsgi.run()
        except OSError:
            # waitress has no stop call: closing its sockets from stop() can end a select() in this
            # thread with EBADF, which is the shutdown, not a failure.
            if not self._stopping.is_set():
                raise

    def stop(self) -> None:
        self._stopping.set()
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._stop_sites(), self._loop).result(15)
            except (TimeoutError, OSError):
                log.warning("front_stop_timed_out")
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._wsgi.close()
        for thread in self._threads:
            thread.join(10)
        if not self._loop.is_running():
            self._loop.close()
        shutil.rmtree(self._run_dir, ignore_errors=True)

