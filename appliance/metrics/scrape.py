"""GET /api/v2/metrics' answer: the process counters (this process's, or every worker's files) and the
values computed now from PostgreSQL and the host, in Prometheus' text format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.metrics.database import DatabaseCollector
from appliance.metrics.host import HostCollector
from appliance.metrics.live import PROCESS_REGISTRY, multiproc_dir
from appliance.pki.ca import CertificateAuthority

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _InMemory(Collector):
    """This process's own counters (one process: `appliance server`, the gateway embedded in it)."""

    def collect(self) -> Iterator[Metric]:
        yield from PROCESS_REGISTRY.collect()


def process_folders(config: ServerConfig) -> list[Path]:
    """The multiprocess folders to add up: this service's, and the installed gateway's when it is readable."""
    own = multiproc_dir()
    if own is None:
        return []
    extra = config.metrics_gateway_dir
    return [own, *([extra] if extra is not None and extra.is_dir() else [])]


def render(config: ServerConfig, db: Database, ca: CertificateAuthority) -> bytes:
    registry = CollectorRegistry()
    folders = process_folders(config)
    for folder in folders:
        MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]  # untyped upstream
    if not folders:
        registry.register(_InMemory())
    registry.register(DatabaseCollector(db, config.provisioner_heartbeat_timeout))
    registry.register(HostCollector(config, ca))
    return generate_latest(registry)
