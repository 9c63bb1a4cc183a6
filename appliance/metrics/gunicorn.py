"""gunicorn's hooks for the console's metrics, taken by its one config module, appliance.server.gunicorn_conf.

Under gunicorn every worker writes its counters to files in PROMETHEUS_MULTIPROC_DIR and any worker's
scrape adds them all up (docs/adr/0042). The master empties the folder as the service starts, and
drops a worker's in-flight gauges when it exits (its counters stay: what it served was served).
"""

from __future__ import annotations

from typing import Any

from appliance.metrics.live import mark_process_dead, prepare_multiproc_dir


def on_starting(server: Any) -> None:
    prepare_multiproc_dir()


def child_exit(server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)
