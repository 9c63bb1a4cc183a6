"""100 concurrent followers of a running build's log, in both layouts: nobody starves, nothing is lost.

(a) installed: gunicorn with the console role's settings and `appliance gateway`, behind real nginx
configured from the gateway role's templates and the nginx role's `location /`;
(b) embedded: `appliance server`, one port. In both /healthz answers in under a second throughout,
no gunicorn worker is killed, every follower receives every line, and the gateway's memory per
follower is printed. The load itself is modest (300 lines), for a shared two-core machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.db.database import Database
from appliance.provisioner.local import start_in_process
from tests.support.api import Api
from tests.support.followers import HealthProbe, all_log_ids, follow_concurrently, rss_kib
from tests.support.installed import Served, spawn, stop
from tests.support.installed import installed_layout as installed
from tests.support.postgres import free_port, traversable_temp_dir
from tests.support.server import make_config, wait_for_health
from tests.support.workspaces import TEMPLATES, push, wait_build, wait_version

pytestmark = pytest.mark.integration

FOLLOWERS = 100
LINES = 300
HEALTHZ_BOUND = 1.0


@pytest.fixture
def installed_layout(fresh_db: str) -> Iterator[Served]:
    """nginx -> gunicorn (console role's settings) and `appliance gateway`, on unix sockets."""
    with installed(fresh_db) as served:
        yield served


@pytest.fixture
def embedded_server(appliance_mirror: Path) -> Iterator[Served]:
    """`appliance server` on a fresh data dir: embedded PostgreSQL, in-process provisioner, one port."""
    root = traversable_temp_dir("appliance-load-")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
           "APPLIANCE_DATA_DIR": str(root / "data"), "APPLIANCE_MIRROR_DIR": str(appliance_mirror),
           "APPLIANCE_LOG_LEVEL": "warning", "XDG_CONFIG_HOME": str(root), "APPLIANCE_BASE_IMAGE_AUTO": "false"}
    log = root / "server.log"  # a file, not a pipe nobody reads while the load runs
    process = spawn([sys.executable, "-m", "appliance", "server", "--http-address", f"127.0.0.1:{port}"], log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, timeout=120, alive=lambda: process.poll() is None)
        yield Served(url, process.pid, [log], root)
    finally:
        stop([process])
        shutil.rmtree(root, ignore_errors=True)


def _owner(url: str) -> Api:
    api = Api(url)
    api.create_first_user("owner")
    return api.as_user(api.login("owner"))


def _follow_a_chatty_build(served: Served, owner: Api, label: str) -> None:
    assert owner.token is not None
    wait_version(owner, "chatty", push(owner, TEMPLATES / "chatty", "chatty")["id"])
    created = owner.post("/api/v2/workspaces", json={"template": "chatty", "name": "load",
                                                     "parameters": {"wait": "5", "lines": str(LINES)}})
    assert created.status_code == 201, created.text
    build_id = created.json()["latest_build"]["id"]
    with HealthProbe(served.url, served.gateway_pid) as probe:
        baseline = rss_kib(served.gateway_pid)
        probe.peak_rss_kib = baseline
        followed = asyncio.run(follow_concurrently(served.url, f"/api/v2/workspacebuilds/{build_id}/logs?follow=true",
                                                   owner.token, FOLLOWERS))
    build = wait_build(owner, build_id)
    assert build["status"] == "running", build["job"]["error"]
    expected = all_log_ids(owner, build_id)
    assert len(expected) >= LINES
    assert [f.error for f in followed if f.error] == []
    assert all(f.end == {"status": "succeeded", "error": ""} for f in followed), "every follower saw the end"
    short = [len(f.ids) for f in followed if f.ids != expected]
    assert short == [], f"followers missing lines (got {short} of {len(expected)})"
    assert probe.failures == [], probe.failures
    per_follower = (probe.peak_rss_kib - baseline) / FOLLOWERS
    print(f"\n[{label}] {FOLLOWERS} followers x {len(expected)} lines: slowest /healthz {probe.slowest * 1000:.0f} ms "
          f"over {probe.answers} probes; gateway RSS {baseline} KiB -> peak {probe.peak_rss_kib} KiB, "
          f"{per_follower:.1f} KiB per follower")
    assert probe.slowest < HEALTHZ_BOUND, f"/healthz took {probe.slowest:.2f}s under {FOLLOWERS} followers"


def test_100_followers_behind_nginx_gunicorn_and_the_gateway(
        installed_layout: Served, fresh_db: str, appliance_mirror: Path, tmp_path: Path) -> None:
    owner = _owner(installed_layout.url)
    # The provisioner runs in this test process (installed, it is its own service): it only makes logs.
    db = Database(fresh_db)
    config = make_config(postgres_url=fresh_db, mirror_dir=appliance_mirror, provisioner_dir=tmp_path,
                         access_url=installed_layout.url, provisioner_daemons=1)
    daemons = start_in_process(config, db)
    try:
        _follow_a_chatty_build(installed_layout, owner, "nginx + gunicorn + gateway")
    finally:
        daemons.stop()
        db.close()
    gunicorn_log = installed_layout.logs[0].read_text()
    assert "WORKER TIMEOUT" not in gunicorn_log, gunicorn_log[-2000:]


def test_100_followers_of_appliance_server(embedded_server: Served) -> None:
    _follow_a_chatty_build(embedded_server, _owner(embedded_server.url), "appliance server")
