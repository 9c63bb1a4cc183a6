"""Metrics in the installed layout: nginx -> gunicorn (two workers, the console role's settings) and the
gateway, each writing prometheus-client's multiprocess files; any worker's scrape adds up all of them."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import Api
from tests.support.installed import Served, installed_layout

pytestmark = pytest.mark.integration

REQUESTS = 60


@pytest.fixture
def installed(fresh_db: str) -> Iterator[Served]:
    with installed_layout(fresh_db) as served:
        yield served


def _counted(text: str, path: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "coderd_api_requests_processed_total" and s.labels["path"] == path)


def test_every_workers_requests_add_up_in_any_workers_scrape(installed: Served) -> None:
    api = Api(installed.url)
    api.create_first_user("owner")
    owner = api.as_user(api.login("owner"))
    made = owner.post("/api/v2/users/me/keys/tokens", json={"token_name": "prometheus", "scope": "metrics"})
    assert made.status_code == 201, made.text
    token = made.json()["key"]

    def buildinfo(_: int) -> int:  # a new connection each: nginx hands them to whichever worker accepts
        return requests.get(installed.url + "/api/v2/buildinfo", timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(buildinfo, range(REQUESTS))) == {200}
    workers = {f.stem.rsplit("_", 1)[1] for f in (installed.run / "console-metrics").glob("counter_*.db")}
    assert len(workers) == 2, f"both workers should have answered some: {workers}"
    scrapes = [api.get("/api/v2/metrics", token=token) for _ in range(6)]
    assert {s.status_code for s in scrapes} == {200}
    assert {_counted(s.text, "/api/v2/buildinfo") for s in scrapes} == {REQUESTS}
    # The gateway's gauge reaches the console's scrape from the gateway's own folder.
    families = {f.name for f in text_string_to_metric_families(scrapes[0].text)}
    assert "coderd_api_concurrent_websockets" in families

    # A worker that dies: gunicorn's child_exit drops its in-flight gauge; what it served still counts.
    folder = installed.run / "console-metrics"
    dead = min(workers)
    assert (folder / f"gauge_livesum_{dead}.db").exists()
    os.kill(int(dead), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (folder / f"gauge_livesum_{dead}.db").exists():
        assert time.monotonic() < deadline, "gunicorn's master never marked the dead worker"
        time.sleep(0.1)
    after = api.get("/api/v2/metrics", token=token)
    assert _counted(after.text, "/api/v2/buildinfo") == REQUESTS
