"""Metrics read from PostgreSQL at scrape time: jobs, queue wait, daemons, builds, agents and relays.

PostgreSQL is the one state every process shares, so reading it when Prometheus asks gives the same
answer from any gunicorn worker and survives restarts: no process has to have seen the event. The
histograms are summaries of every finished job, bucketed by the database (docs/adr/0042).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.db.database import Connection, Database, Row
from appliance.relay.stats import STATS_SECONDS
from appliance.workspaces.agent_status import ConnectionTimes, connection_status

log = logging.getLogger("appliance.metrics")

PROVISIONER = "terraform"  # Coder's provisioner label; the only kind there is
# Jobs run for seconds to an hour; queue waits start lower (a job usually waits less than a second).
JOB_BUCKETS = (1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)
QUEUE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0)
RELAY_STALE_AFTER = 3 * STATS_SECONDS  # a relay that wrote nothing for this long is down

# A finished job's status, as appliance.provisioner.jobs.job_status names it.
_JOB_STATUS = ("CASE WHEN j.canceled_at IS NOT NULL THEN 'canceled' WHEN j.error <> '' THEN 'failed'"
               " ELSE 'succeeded' END")


def _bucketed(seconds: str, buckets: Sequence[float]) -> str:
    """Aggregates over `seconds`: cumulative counts per bucket bound, the count and the sum."""
    counts = ", ".join(f"count(*) FILTER (WHERE {seconds} <= {bound})" for bound in buckets)
    return f"ARRAY[{counts}]::bigint[] AS buckets, count(*) AS total, coalesce(sum({seconds}), 0)::float8 AS seconds"


_JOB_TIMINGS = (
    f"SELECT {_JOB_STATUS} AS status, "  # noqa: S608 -- constants only
    + _bucketed("extract(epoch FROM j.completed_at - j.started_at)", JOB_BUCKETS)
    + " FROM provisioner_jobs j WHERE j.completed_at IS NOT NULL AND j.started_at IS NOT NULL GROUP BY 1")
_QUEUE_WAIT = (
    "SELECT j.type AS job_type, "  # noqa: S608 -- constants only
    + _bucketed("extract(epoch FROM j.started_at - j.created_at)", QUEUE_BUCKETS)
    + " FROM provisioner_jobs j WHERE j.started_at IS NOT NULL GROUP BY 1")
_JOBS = ("SELECT count(*) FILTER (WHERE started_at IS NOT NULL AND completed_at IS NULL) AS running,"
         " count(*) FILTER (WHERE started_at IS NULL AND canceled_at IS NULL) AS queued FROM provisioner_jobs")
_DAEMONS = "SELECT count(*) AS n FROM provisioner_daemons WHERE last_seen_at > now() - %s"
_BUILDS = (
    f"SELECT {_JOB_STATUS} AS status, t.name AS template_name, v.number::text AS template_version,"  # noqa: S608
    " w.name AS workspace_name, u.username AS workspace_owner, b.transition, count(*) AS n"
    " FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id"
    " JOIN workspaces w ON w.id = b.workspace_id JOIN users u ON u.id = w.owner_id"
    " JOIN template_versions v ON v.id = b.template_version_id JOIN templates t ON t.id = v.template_id"
    " WHERE j.completed_at IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6")
# The agents of every live workspace: its latest build starts it and it is not deleted.
_AGENTS = (
    "SELECT a.name AS agent_name, a.lifecycle_state, a.created_at, a.connection_timeout_seconds,"
    " a.first_connected_at, a.last_connected_at, a.disconnected_at, w.name AS workspace_name,"
    " u.username, t.name AS template_name, now() AS now"
    " FROM workspace_agents a JOIN workspace_resources r ON r.id = a.resource_id"
    " JOIN workspace_builds b ON b.job_id = r.job_id JOIN workspaces w ON w.id = b.workspace_id"
    " JOIN users u ON u.id = w.owner_id JOIN templates t ON t.id = w.template_id"
    " WHERE w.deleted_at IS NULL AND b.transition = 'start'"
    " AND b.build_number = (SELECT max(build_number) FROM workspace_builds WHERE workspace_id = w.id)"
    " ORDER BY u.username, w.name, a.name")
_RELAYS = ("SELECT relay_name, counters, updated_at > now() - %s AS is_up FROM relay_stats ORDER BY relay_name")


class DatabaseCollector(Collector):
    """Everything above, read on one connection per scrape; appliance_database_up says whether it could."""

    def __init__(self, db: Database, daemon_seen_within: timedelta) -> None:
        self.db = db
        self.daemon_seen_within = daemon_seen_within

    def collect(self) -> Iterator[Metric]:
        try:
            with self.db.reading(timeout=5) as conn:
                found = [*_jobs(conn, self.daemon_seen_within), *_builds(conn), *_agents(conn), *_relays(conn)]
        except Exception as err:  # a scrape reports the outage as a value, never as a failed request
            log.warning("metrics_database_unavailable", extra={"error": str(err)})
            found = []
        yield GaugeMetricFamily("appliance_database_up", "1 when the scrape could read PostgreSQL.",
                                value=1 if found else 0)
        yield from found


def _histogram(name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], Row]],
               buckets: Sequence[float]) -> HistogramMetricFamily:
    """A histogram from rows of _bucketed's aggregates, each with its label values."""
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, row in rows:
        cumulative = [(str(bound), int(count)) for bound, count in zip(buckets, row["buckets"], strict=True)]
        family.add_metric(values, [*cumulative, ("+Inf", int(row["total"]))], float(row["seconds"]))
    return family


def _jobs(conn: Connection, seen_within: timedelta) -> list[Metric]:
    counts = conn.execute(_JOBS).fetchone()
    daemons = conn.execute(_DAEMONS, (seen_within,)).fetchone()
    assert counts is not None and daemons is not None
    current = GaugeMetricFamily("coderd_provisionerd_jobs_current", "Jobs running now.", labels=["provisioner"])
    current.add_metric([PROVISIONER], counts["running"])
    return [
        current,
        GaugeMetricFamily("appliance_provisioner_jobs_queued", "Jobs waiting for a daemon.", value=counts["queued"]),
        GaugeMetricFamily("coderd_provisionerd_num_daemons", "Provisioner daemons seen recently.",
                          value=daemons["n"]),
        _histogram("coderd_provisionerd_job_timings_seconds", "How long finished jobs ran.",
                   ["provisioner", "status"],
                   (([PROVISIONER, r["status"]], r) for r in conn.execute(_JOB_TIMINGS).fetchall()), JOB_BUCKETS),
        _histogram("coderd_provisioner_job_queue_wait_seconds", "How long started jobs waited in the queue.",
                   ["provisioner", "job_type"],
                   (([PROVISIONER, r["job_type"]], r) for r in conn.execute(_QUEUE_WAIT).fetchall()), QUEUE_BUCKETS),
    ]


def _builds(conn: Connection) -> list[Metric]:
    labels = ["status", "template_name", "template_version", "workspace_name", "workspace_owner",
              "workspace_transition"]
    family = CounterMetricFamily("coderd_workspace_builds_total", "Finished workspace builds.", labels=labels)
    for row in conn.execute(_BUILDS).fetchall():
        family.add_metric([row["status"], row["template_name"], row["template_version"], row["workspace_name"],
                           row["workspace_owner"], row["transition"]], row["n"])
    return [family]


def _agents(conn: Connection) -> list[Metric]:
    up = GaugeMetricFamily("coderd_agents_up", "Connected agents of each live workspace.",
                           labels=["template_name", "username", "workspace_name"])
    connections = GaugeMetricFamily("coderd_agents_connections", "Agents of live workspaces, by state.",
                                    labels=["agent_name", "username", "workspace_name", "lifecycle_state", "status"])
    per_workspace: dict[tuple[str, str, str], int] = {}
    for row in conn.execute(_AGENTS).fetchall():
        status = connection_status(ConnectionTimes.from_row(row), row["now"])
        key = (row["template_name"], row["username"], row["workspace_name"])
        per_workspace[key] = per_workspace.get(key, 0) + (status == "connected")
        connections.add_metric([row["agent_name"], row["username"], row["workspace_name"], row["lifecycle_state"],
                                status], 1)
    for key, count in per_workspace.items():
        up.add_metric(list(key), count)
    return [up, connections]


def _relays(conn: Connection) -> list[Metric]:
    labels = ["relay"]
    up = GaugeMetricFamily("appliance_relay_up", "1 while the relay writes its counters.", labels=labels)
    peers = GaugeMetricFamily("appliance_relay_peers", "Keys connected to the relay now.", labels=labels)
    sent = CounterMetricFamily("appliance_relay_bytes", "Bytes the relay received (in) and sent (out).",
                               labels=[*labels, "direction"])
    packets = CounterMetricFamily("appliance_relay_packets", "Packets the relay received (in) and sent (out).",
                                  labels=[*labels, "direction"])
    drops = CounterMetricFamily("appliance_relay_drops", "Packets the relay dropped.", labels=labels)
    refusals = CounterMetricFamily("appliance_relay_refusals", "Connections the relay refused.", labels=labels)
    for row in conn.execute(_RELAYS, (timedelta(seconds=RELAY_STALE_AFTER),)).fetchall():
        name, counters = [row["relay_name"]], dict(row["counters"])
        up.add_metric(name, 1 if row["is_up"] else 0)
        peers.add_metric(name, counters.get("peers", 0))
        for direction in ("in", "out"):
            sent.add_metric([*name, direction], counters.get(f"bytes_{direction}", 0))
            packets.add_metric([*name, direction], counters.get(f"packets_{direction}", 0))
        drops.add_metric(name, counters.get("drops", 0))
        refusals.add_metric(name, counters.get("refusals", 0))
    return [up, peers, sent, packets, drops, refusals]
