"""The metrics a process counts as it serves, and where they live: memory, or the multiprocess folder.

prometheus-client chooses its storage when it is first imported: with PROMETHEUS_MULTIPROC_DIR set
(the installed console's gunicorn and the gateway, docs/adr/0042) every process writes its values to
files in that folder, which a scrape adds up; without it (`appliance server`, one process) they stay in
memory. Metrics are made on first use, once the folder is ready.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# In memory (one process): what a scrape reads; unused in multiprocess mode, where the files are read.
PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
# Coder's buckets for coderd_api_request_latencies_seconds, so dashboards' quantiles carry over.
LATENCY_BUCKETS = (0.001, 0.005, 0.010, 0.025, 0.050, 0.100, 0.500, 1, 5, 10, 30)


@dataclass(frozen=True)
class HttpMetrics:
    requests: Counter
    latencies: Histogram
    in_flight: Gauge


def multiproc_dir() -> Path | None:
    """This process's multiprocess folder, or None when its metrics stay in memory."""
    value = os.environ.get(MULTIPROC_ENV, "")
    return Path(value) if value else None


def prepare_multiproc_dir() -> None:
    """Make the folder and empty it of an earlier run's files.

    Called once per service start (gunicorn's master, the gateway) before any metric exists, so
    counters start from zero with the service, as Prometheus expects after a restart.
    """
    folder = multiproc_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


def mark_process_dead(pid: int) -> None:
    """A gunicorn worker left: its in-flight gauges go; its counters stay in the sum."""
    folder = multiproc_dir()
    if folder is not None:
        multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]  # untyped upstream


def _ensure_folder() -> None:
    folder = multiproc_dir()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)  # a value's first write opens its file there


@cache
def http_metrics() -> HttpMetrics:
    _ensure_folder()
    return HttpMetrics(
        requests=Counter("coderd_api_requests_processed_total", "API and console requests answered.",
                         ("code", "method", "path"), registry=PROCESS_REGISTRY),
        latencies=Histogram("coderd_api_request_latencies_seconds", "Time to answer a request.",
                            ("method", "path"), buckets=LATENCY_BUCKETS, registry=PROCESS_REGISTRY),
        in_flight=Gauge("coderd_api_concurrent_requests", "Requests being answered now.",
                        registry=PROCESS_REGISTRY, multiprocess_mode="livesum"),
    )


@cache
def websockets_gauge() -> Gauge:
    _ensure_folder()
    return Gauge("coderd_api_concurrent_websockets", "WebSockets the gateway holds open now.",
                 registry=PROCESS_REGISTRY, multiprocess_mode="livesum")
