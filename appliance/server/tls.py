"""HTTPS for a bare WSGI app (cheroot), whose certificate is reloaded in place after renewal.

`appliance server` serves HTTPS from its front (appliance/gateway/front.py) instead, so log
follows share the origin; this stays for serving the app alone (tests, benchmarks/mirror_init.py).
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
from pathlib import Path
from wsgiref.types import WSGIApplication

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from appliance.config import Address
from appliance.errors import OperatorError

log = logging.getLogger(__name__)


class TlsListener:
    def __init__(self, address: Address, app: WSGIApplication, cert_file: Path, key_file: Path) -> None:
        self.address = address
        self.cert_file, self.key_file = cert_file, key_file
        self._server = wsgi.Server((address.host, address.port), app, numthreads=8,
                                   server_name="appliance", shutdown_timeout=5)
        adapter = BuiltinSSLAdapter(str(cert_file), str(key_file))
        adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server.ssl_adapter = adapter
        self._server.error_log = _log_listener_error  # type: ignore[method-assign]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._server.prepare()
        except OSError as err:
            raise OperatorError(f"Cannot listen on {self.address} for HTTPS: {err.strerror}.",
                                "Stop the process using that port, or pass another --tls-address.") from err
        self._thread = threading.Thread(target=self._server.serve, name="tls-listener", daemon=True)
        self._thread.start()

    def reload_certificate(self) -> None:
        """New connections get the renewed certificate; open ones keep theirs."""
        adapter = self._server.ssl_adapter
        assert isinstance(adapter, BuiltinSSLAdapter)
        adapter.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        log.info("tls_certificate_reloaded", extra={"cert": str(self.cert_file)})

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(10)


def _log_listener_error(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    """cheroot's error channel: failed handshakes and clients hanging up mid-response are debug noise."""
    current = sys.exc_info()[1]
    if "TLS" in msg or "SSL" in msg or "handshake" in msg or isinstance(current, (ssl.SSLError, ConnectionError)):
        log.debug("tls_connection_dropped", extra={"detail": msg or repr(current)})
    else:
        log.log(level, "tls_listener_error", extra={"detail": msg}, exc_info=traceback)
