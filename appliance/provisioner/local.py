"""In-process daemons: the server's own provisionerd loops, talking to PostgreSQL directly (LocalBackend)."""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from appliance import __version__
from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.db.pubsub import Subscription
from appliance.pki.ca import CertificateAuthority
from appliance.provisioner import coordinator, jobs, redaction
from appliance.provisionerd.backend import JobGone
from appliance.provisionerd.cliconfig import filesystem_mirror_config
from appliance.provisionerd.daemon import Daemon
from appliance.provisionerd.runner import JobRunner, RunnerSettings
from appliance.provisionerd.sandbox import SANDBOX_UID_BASE, Sandbox
from appliance.registry.site import internal_hosts
from appliance.sdk.provisionerd import STATE_CHUNK_BYTES, JobSpec

log = logging.getLogger(__name__)


class LocalBackend:
    def __init__(self, db: Database, *, name: str, tags: dict[str, str], site: coordinator.JobSite,
                 heartbeat_timeout: timedelta, site_secrets: tuple[str, ...],
                 registry_hosts: frozenset[str] = frozenset()) -> None:
        self._db, self._tags, self._site = db, tags, site
        self._registry_hosts = registry_hosts
        self._site_secrets = site_secrets
        self._heartbeat_timeout = heartbeat_timeout
        self._name = name
        self.daemon_id = uuid4()
        self._wakeups: AbstractContextManager[Subscription] | None = None
        self._subscription: Subscription | None = None

    def wait_for_work(self, timeout: float) -> None:
        """Sleep until a job is queued (NOTIFY provisioner_jobs) or `timeout` passes.

        The subscription lasts as long as the backend, so a job queued while this daemon was
        busy has left a notice and the next wait returns at once.
        """
        if self._subscription is None:
            self._wakeups = self._db.pubsub.subscribe(jobs.JOBS_CHANNEL)
            self._subscription = self._wakeups.__enter__()
        self._subscription.get(timeout)

    def close(self) -> None:
        if self._wakeups is not None:
            self._wakeups.__exit__(None, None, None)
            self._wakeups = self._subscription = None

    def acquire(self) -> JobSpec | None:
        with self._db.transaction() as conn:
            # Registered at every poll (an upsert): it doubles as the daemon's last-seen time.
            jobs.register_daemon(conn, self.daemon_id, self._name, self._tags, __version__)
            return coordinator.acquire(conn, self.daemon_id, self._tags, self._site, self._heartbeat_timeout)

    def heartbeat(self, job_id: UUID) -> bool | None:
        with self._db.transaction() as conn:
            return jobs.heartbeat(conn, job_id, self.daemon_id)

    def logs(self, job_id: UUID, lines: list[tuple[str, str, str]]) -> None:
        with self._db.transaction() as conn:
            coordinator.append_logs(conn, job_id, lines, self._site_secrets)

    def save_state(self, job_id: UUID, state: bytes) -> None:
        view = memoryview(state)
        chunks = (view[at:at + STATE_CHUNK_BYTES] for at in range(0, len(view), STATE_CHUNK_BYTES))
        with self._db.transaction() as conn:
            if not coordinator.save_state(conn, job_id, self.daemon_id, chunks):
                raise JobGone(job_id)

    def complete_import(self, job_id: UUID, plan: dict[str, Any]) -> None:
        with self._db.transaction() as conn:
            if not coordinator.complete_import(conn, job_id, self.daemon_id, plan, self._site_secrets,
                                                 self._registry_hosts):
                raise JobGone(job_id)

    def complete_build(self, job_id: UUID) -> None:
        with self._db.transaction() as conn:
            if not coordinator.complete_build(conn, job_id, self.daemon_id):
                raise JobGone(job_id)

    def fail(self, job_id: UUID, error: str) -> None:
        with self._db.transaction() as conn:
            if not coordinator.fail(conn, job_id, self.daemon_id, error, self._site_secrets):
                raise JobGone(job_id)


@dataclass
class InProcessProvisioners:
    """The server's daemons, each on its own thread, stopped between jobs on shutdown, and the reaper."""

    daemons: list[Daemon] = field(default_factory=list)
    backends: list[LocalBackend] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        for daemon in self.daemons:
            daemon.stop()
        for thread in self.threads:
            thread.join(timeout)
        for backend in self.backends:
            backend.close()


def _reap_periodically(db: Database, heartbeat_timeout: timedelta, stopping: threading.Event) -> None:
    """Fail jobs whose daemon went silent even when no daemon is left to notice (all of them died)."""
    while not stopping.wait(max(1.0, heartbeat_timeout.total_seconds() / 2)):
        try:
            with db.transaction() as conn:
                jobs.reap(conn, heartbeat_timeout)
        except Exception:  # the database may be restarting; try again next round
            log.warning("provisioner_reap_failed", exc_info=True)


def start_in_process(config: ServerConfig, db: Database, count: int | None = None) -> InProcessProvisioners:
    """Start `count` (default: the configured number of) daemons and the reaper."""
    started = InProcessProvisioners()
    reaper = threading.Thread(target=_reap_periodically, name="provisioner-reaper", daemon=True,
                              args=(db, config.provisioner_heartbeat_timeout, started.stopping))
    reaper.start()
    started.threads.append(reaper)
    site = coordinator.JobSite.for_config(config, CertificateAuthority.for_site(config))
    for index in range(config.provisioner_daemons if count is None else count):
        name = f"built-in-{index + 1}"
        root = config.provisioner_dir / name
        cli_config = filesystem_mirror_config(root, config.mirror_dir)
        backend = LocalBackend(db, name=name, tags=dict(jobs.SITE_TAGS), site=site,
                               heartbeat_timeout=config.provisioner_heartbeat_timeout,
                               site_secrets=redaction.site_secrets(config, db.conninfo),
                               registry_hosts=internal_hosts(config))
        interval = max(1.0, config.provisioner_heartbeat_timeout.total_seconds() / 4)
        # Each daemon's terraform under a uid of its own, none of them the server's.
        sandbox = Sandbox(SANDBOX_UID_BASE + index + 1, cli_config, mirror_dir=config.mirror_dir,
                          runtime_socket=config.runtime_socket)
        daemon = Daemon(backend, JobRunner(backend, RunnerSettings(root, sandbox, heartbeat_interval=interval)))
        thread = threading.Thread(target=daemon.run_forever, name=f"provisioner-{name}", daemon=True)
        thread.start()
        started.daemons.append(daemon)
        started.backends.append(backend)
        started.threads.append(thread)
    if started.daemons:
        log.info("provisioners_started", extra={"count": len(started.daemons), "mirror": str(config.mirror_dir)})
    return started
