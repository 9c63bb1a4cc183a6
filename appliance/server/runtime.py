"""Start and stop the control plane: listeners, the CA, PostgreSQL, migrations, the embedded front.

Sockets are bound first so a busy port fails in a second, before any slow database work;
shutdown on SIGTERM or SIGINT closes the listeners, the pool, then the embedded cluster.
The internal registry (docs/adr/0018) runs as a child on its own TLS port unless registry_embedded is off.
The front (appliance/gateway/front.py) serves HTTP and HTTPS on the public ports: log follows
itself, everything else through the WSGI app behind it. A background thread renews certificates
before they expire and hands the new one to the HTTPS listener.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from appliance.app import create_app, freeze_startup_heap
from appliance.config import Address, ServerConfig
from appliance.db.database import Database
from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations
from appliance.errors import OperatorError
from appliance.gateway.front import EmbeddedFront, TlsSettings
from appliance.pki.ca import CertificateAuthority
from appliance.provisioner.local import InProcessProvisioners, start_in_process
from appliance.registry import site as registry_site
from appliance.registry.config import write_registry_config
from appliance.registry.process import RegistryProcess
from appliance.registry.tokens import ensure_signing_certificate
from appliance.runtime.service import EmbeddedRuntime, RuntimeSettings
from appliance.server.agent_binary import AgentBinary
from appliance.server.base_image import BaseImage
from appliance.server.certificates import SERVER_CERT_NAME, ensure_ca, ensure_server_certificate
from appliance.server.provider import ensure_provider
from appliance.templates.starter import push_starters, starter_sources

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


RENEWAL_INTERVAL = 6 * 3600.0


@dataclass
class Runtime:
    config: ServerConfig
    embedded: EmbeddedPostgres | None = None
    db: Database | None = None
    ca: CertificateAuthority | None = None
    ca_created: bool = False
    front: EmbeddedFront | None = None
    provisioners: InProcessProvisioners | None = None
    # Why the embedded server has no appliance provider in its mirror (shown in the banner), if it has none.
    provider_problem: OperatorError | None = None
    registry: RegistryProcess | None = None
    # The workspace base image, built (once per machine) and imported into the embedded registry.
    base_image: BaseImage | None = None
    # The workspace agent executable, built (once per change of its sources) into agent_binary_dir.
    agent_binary: AgentBinary | None = None
    # Why the embedded registry is not running (shown in the banner), if it is not.
    registry_problem: OperatorError | None = None
    # Why workspaces cannot run containers (no podman, not root), shown in the banner; None when they can.
    workspace_runtime_problem: OperatorError | None = None
    workspace_runtime: EmbeddedRuntime | None = None
    # Progress for the person waiting at the terminal (the CLI prints it; logs get events).
    say: Callable[[str], None] = field(default=lambda _: None, repr=False)
    _listener: socket.socket | None = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self) -> None:
        self._listener = bind(self.config.http_address)
        self.ca, self.ca_created = ensure_ca(self.config)
        ensure_signing_certificate(self.ca)
        if self.config.tls_address is not None:
            ensure_server_certificate(self.ca, self.config)
        conninfo = self.config.postgres_url
        if conninfo is None:
            self.embedded = EmbeddedPostgres(self.config.data_dir / "postgres")
            conninfo = self.embedded.start()
        applied = apply_migrations(conninfo)
        log.info("database_ready", extra={"migrations_applied": len(applied),
                                          "embedded": self.embedded is not None})
        self.db = Database(conninfo)
        if self.config.registry_embedded:
            self._start_registry()
        if self.embedded is not None:
            self._publish_provider()
            self._push_starter_template()
        if self.config.runtime_embedded:
            self._start_workspace_runtime()
        if (self.config.base_image_auto and self.registry is not None and self.ca is not None
                and self.embedded is not None):
            self.base_image = BaseImage(self.config, self.ca, self.say)  # started once the banner is out
        if self.embedded is not None:
            self.agent_binary = AgentBinary(self.config, self.say)  # started once the banner is out

    def _start_workspace_runtime(self) -> None:
        """The runtime service in this process (embedded); a failure is reported, and the console still serves."""
        if os.geteuid() != 0:
            self.workspace_runtime_problem = OperatorError(
                "Workspaces cannot run containers: the runtime service drives rootful podman and needs root.",
                "Run 'appliance server' as root, or run 'appliance runtime serve' as root (runtime_embedded = false).")
            return
        service = EmbeddedRuntime(RuntimeSettings.from_config(self.config))
        try:
            service.start()
        except OperatorError as err:
            self.workspace_runtime_problem = err
            log.error("workspace_runtime_unavailable", extra={"reason": err.message, "hint": err.hint})
            return
        self.workspace_runtime = service

    def _publish_provider(self) -> None:
        """Embedded mode builds its own provider; a failure is reported, and the console still serves."""
        try:
            ensure_provider(self.config, self.say)
        except OperatorError as err:
            self.provider_problem = err
            log.error("provider_unavailable", extra={"mirror": str(self.config.mirror_dir), "reason": err.message,
                                                     "hint": err.hint})

    def _start_registry(self) -> None:
        """The registry is a child on its own port; a failure is reported, and the console still serves."""
        assert self.ca is not None
        registry_site.ensure_certificate(self.ca, self.config)
        write_registry_config(registry_site.settings(self.config), registry_site.config_file(self.config))
        registry = registry_site.embedded_process(self.config)
        try:
            registry.start()
        except OperatorError as err:
            self.registry_problem = err
            log.error("registry_unavailable", extra={"address": str(self.config.registry_address),
                                                     "reason": err.message, "hint": err.hint})
            return
        registry.watch()
        self.registry = registry
        log.info("registry_ready", extra={"url": registry.url, "storage": str(registry_site.storage_dir(self.config))})

    def _push_starter_template(self) -> None:
        sources = starter_sources()
        if not sources or self.db is None or self.provider_problem is not None:
            return  # without the provider their imports would fail; the next start pushes them
        try:
            with self.db.transaction() as conn:
                push_starters(conn, sources, self.config.provisioner_job_timeout)
        except OperatorError:
            log.exception("starter_template_failed")

    def serve_forever(self) -> None:
        assert self.db is not None and self._listener is not None
        # The WSGI app is always behind the front, which appends itself to X-Forwarded-*.
        app = create_app(self.config, self.db, behind_front=True)
        freeze_startup_heap()
        tls = None
        if self.config.tls_address is not None and self.ca is not None:
            layout = self.ca.layout
            tls = TlsSettings(self.config.tls_address, layout.live_fullchain(SERVER_CERT_NAME),
                              layout.live_key(SERVER_CERT_NAME))
        self.front = EmbeddedFront(self.config, self.db, app, self._listener, tls)
        previous = {sig: signal.signal(sig, _request_shutdown) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.front.start()
            threading.Thread(target=self._renew_periodically, name="cert-renewal", daemon=True).start()
            self.provisioners = start_in_process(self.config, self.db)
            if self.agent_binary is not None:
                self.agent_binary.start()
            if self.base_image is not None:
                self.base_image.start()
            while not self._stopping.wait(3600):
                pass
        except ShutdownRequested:
            log.info("shutdown_requested")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _renew_periodically(self) -> None:
        while not self._stopping.wait(RENEWAL_INTERVAL):
            self.renew_certificates()

    def renew_certificates(self) -> None:
        """Renew whatever is due, refresh the CRL, and hand a new server certificate to the listener."""
        if self.ca is None:
            return
        try:
            before = self.ca.current(SERVER_CERT_NAME)
            registry_before = self.ca.current(registry_site.CERT_NAME)
            self.ca.renew_due(self.config.cert_renew_within)
            if self.config.tls_address is not None:
                ensure_server_certificate(self.ca, self.config)
            if self.registry is not None:
                registry_site.ensure_certificate(self.ca, self.config)
            after = self.ca.current(SERVER_CERT_NAME)
            if self.front is not None and after is not None and after != before:
                self.front.reload_certificate()
            if self.registry is not None and self.ca.current(registry_site.CERT_NAME) != registry_before:
                self.registry.restart()  # Distribution reads its certificate only at start
        except (OperatorError, OSError):
            log.exception("certificate_renewal_failed")

    def stop(self) -> None:
        self._stopping.set()
        if self.base_image is not None:
            self.base_image.stop()
        if self.workspace_runtime is not None:
            self.workspace_runtime.stop()
            self.workspace_runtime = None
        if self.provisioners is not None:
            self.provisioners.stop(timeout=5.0)
            self.provisioners = None
        if self.front is not None:
            self.front.stop()
            self.front = None
        if self.registry is not None:
            self.registry.stop()
            self.registry = None
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
