"""Start and stop the control plane: listening socket, PostgreSQL, migrations, the WSGI server.

The socket is bound first so a busy port fails in a second, before any slow database work;
shutdown on SIGTERM or SIGINT closes the listener, the pool, then the embedded cluster.
"""

from __future__ import annotations

import logging
import signal
import socket
from dataclasses import dataclass, field
from types import FrameType

from waitress.server import create_server

from appliance.app import create_app
from appliance.config import Address, ServerConfig
from appliance.db.database import Database
from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations
from appliance.errors import OperatorError

log = logging.getLogger(__name__)


class ShutdownRequested(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to unwind the serve loop."""


def bind(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as err:
        sock.close()
        raise OperatorError(f"Cannot listen on {address}: {err.strerror}.",
                            "Stop the process using that port, or pass another --http-address.") from err
    sock.listen(1024)
    return sock


@dataclass
class Runtime:
    config: ServerConfig
    embedded: EmbeddedPostgres | None = None
    db: Database | None = None
    _listener: socket.socket | None = field(default=None, repr=False)

    def start(self) -> None:
        self._listener = bind(self.config.http_address)
        conninfo = self.config.postgres_url
        if conninfo is None:
            self.embedded = EmbeddedPostgres(self.config.data_dir / "postgres")
            conninfo = self.embedded.start()
        applied = apply_migrations(conninfo)
        log.info("database_ready", extra={"migrations_applied": len(applied),
                                          "embedded": self.embedded is not None})
        self.db = Database(conninfo)

    def serve_forever(self) -> None:
        assert self.db is not None and self._listener is not None
        app = create_app(self.config, self.db)
        server = create_server(app, sockets=[self._listener], threads=8, ident="appliance",
                               clear_untrusted_proxy_headers=True, channel_timeout=300)
        previous = {sig: signal.signal(sig, _request_shutdown) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            server.run()
        except ShutdownRequested:
            log.info("shutdown_requested")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            server.close()

    def stop(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.embedded is not None:
            self.embedded.stop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def _request_shutdown(signum: int, frame: FrameType | None) -> None:
    raise ShutdownRequested(signal.Signals(signum).name)
