"""The health report against a real server, relay, gateway and PostgreSQL of this module's own.

Each failure a site meets is caused for real and must show as its code: no provisioner daemon
(EPD01), a certificate past the start of its renewal window (ECERT01), a relay that is gone
(EDERP02) and, last, PostgreSQL stopped (EDB01) while the report still answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from appliance import __version__
from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations
from appliance.health.report import run_report
from appliance.pki.ca import CertificateAuthority, IssueRequest
from appliance.provisioner import jobs
from appliance.sdk.health import HealthReport
from tests.support.api import Api
from tests.support.postgres import conninfo_url, create_database, free_port, running_cluster
from tests.support.server import LiveServer, live_server

HEALTH = "/api/v2/debug/health"
SETTINGS = "/api/v2/debug/health/settings"


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this module's own: the last test stops it."""
    with running_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def site(cluster: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    conninfo = create_database(cluster.conninfo("postgres"), "health")
    apply_migrations(conninfo)
    root = tmp_path_factory.mktemp("health")
    ca = CertificateAuthority(root / "pki")
    ca.init(b"health-test-passphrase")
    # Issued 80 days ago for 90 days: 10 days left, inside the 30-day renewal window, never renewed.
    time_travelled = CertificateAuthority(root / "pki", clock=lambda: datetime.now(UTC) - timedelta(days=80))
    time_travelled.issue(IssueRequest("old-service", ("old.example.org",), days=90))
    with live_server(conninfo, pki_dir=root / "pki", data_dir=root / "data") as live:
        yield live


@pytest.fixture(scope="module")
def owner(site: LiveServer) -> Api:
    api = Api(site.url)
    api.create_first_user("owner")
    return api.as_user(api.login("owner"))


def report_of(response_json: dict[str, object]) -> HealthReport:
    return HealthReport.model_validate(response_json)


def codes(report: HealthReport, section: str) -> list[str]:
    return [f.code for f in getattr(report, section).findings]


def test_the_report_shows_a_working_relay_websocket_and_database_and_names_what_is_missing(owner: Api) -> None:
    response = owner.get(HEALTH)
    assert response.status_code == 200, response.text
    report = report_of(response.json())
    ok = ("access_url", "database", "derp", "websocket", "upgrade", "bundle", "backups", "mirror")
    assert all(getattr(report, name).severity == "ok" for name in ok), report.model_dump_json(indent=1)
    assert report.derp.details["round_trip_ms"] > 0 and report.derp.details["websocket_round_trip_ms"] > 0
    assert report.database.details["latency_ms"] >= 0 and report.database.details["threshold_ms"] > 0
    assert codes(report, "provisioner_daemons") == ["EPD01"] and report.provisioner_daemons.severity == "error"
    assert codes(report, "certificates") == ["ECERT01"] and report.certificates.severity == "warning"
    assert "old-service" in report.certificates.findings[0].message
    assert report.severity == "error" and not report.healthy


def test_a_daemon_that_asks_for_work_clears_epd01_and_one_that_stopped_brings_it_back(site: LiveServer) -> None:
    daemon = uuid4()
    with site.db.transaction() as conn:
        jobs.register_daemon(conn, daemon, "health-daemon", dict(jobs.SITE_TAGS), "0.0.0-other")
    report = run_report(site.config, site.db)
    assert codes(report, "provisioner_daemons") == ["EPD02"], report.provisioner_daemons
    # Restarted on this release (as after an upgrade): its new session supersedes the old, still recent one.
    restarted = uuid4()
    with site.db.transaction() as conn:
        jobs.register_daemon(conn, restarted, "health-daemon", dict(jobs.SITE_TAGS), __version__)
    assert codes(run_report(site.config, site.db), "provisioner_daemons") == []
    with site.db.transaction() as conn:
        conn.execute("UPDATE provisioner_daemons SET last_seen_at = now() - interval '1 hour' WHERE id = ANY(%s)",
                     ([daemon, restarted],))
    assert codes(run_report(site.config, site.db), "provisioner_daemons") == ["EPD01"]


def test_a_relay_that_is_gone_is_ederp02(site: LiveServer) -> None:
    nowhere = replace(site.config, access_url=f"http://127.0.0.1:{free_port()}")
    report = run_report(nowhere, site.db)
    assert codes(report, "derp") == ["EDERP02"] and report.derp.severity == "error"
    assert codes(report, "websocket") == ["EWS01"] and codes(report, "access_url") == ["EACS02"]


def test_an_owner_dismisses_a_code_which_stays_reported_but_stops_counting(owner: Api, site: LiveServer) -> None:
    auditor = owner.as_user(owner.login(owner.create_user(["auditor"])["username"]))
    member = owner.as_user(owner.login(owner.create_user()["username"]))
    assert member.get(HEALTH).status_code == 403 and member.get(SETTINGS).status_code == 403
    assert auditor.put(SETTINGS, json={"dismissed_codes": ["EPD01"]}).status_code == 403
    refused = owner.put(SETTINGS, json={"dismissed_codes": ["NOPE01"]})
    assert refused.status_code == 400 and "NOPE01" in refused.json()["message"]
    saved = owner.put(SETTINGS, json={"dismissed_codes": ["EPD01", "ECERT01"]})
    assert saved.status_code == 200 and saved.json() == {"dismissed_codes": ["ECERT01", "EPD01"]}
    report = report_of(auditor.get(HEALTH).json())
    assert report.provisioner_daemons.findings[0].dismissed and report.provisioner_daemons.dismissed
    assert report.provisioner_daemons.severity == "ok" and report.certificates.severity == "ok"
    assert auditor.get(SETTINGS).json() == {"dismissed_codes": ["ECERT01", "EPD01"]}
    audit = owner.get("/api/v2/audit").json()["audit_logs"]
    assert any(e["resource_type"] == "health_settings" and e["username"] == "owner" for e in audit)
    assert owner.put(SETTINGS, json={"dismissed_codes": []}).status_code == 200


def test_with_postgresql_stopped_the_report_still_answers_edb01(owner: Api, site: LiveServer,
                                                                 cluster: EmbeddedPostgres) -> None:
    assert owner.get(SETTINGS).status_code == 200  # the owner's token is now in the console's cache
    cluster.stop()
    response = owner.get(HEALTH)
    assert response.status_code == 200, response.text
    report = report_of(response.json())
    assert codes(report, "database") == ["EDB01"] and report.severity == "error"
    assert report.access_url.severity == "error"  # /healthz answers 503 without its database
    env = {**os.environ, "APPLIANCE_POSTGRES_URL": conninfo_url(site.db.conninfo), "APPLIANCE_ACCESS_URL": site.url,
           "APPLIANCE_DATA_DIR": str(site.config.data_dir), "APPLIANCE_PKI_DIR": str(site.config.pki_dir)}
    env.pop("APPLIANCE_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "appliance", "health", "--local", "--output", "json"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    local = HealthReport.model_validate(json.loads(done.stdout))
    assert codes(local, "database") == ["EDB01"] and local.database.severity == "error"
    assert codes(local, "certificates") == ["ECERT01"]  # what does not need the database is still checked

