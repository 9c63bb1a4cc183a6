"""GET /api/v2/metrics on a real server: who may scrape, what the text holds, and that it moves with use.

One module server with a seeded workspace whose stand-in agent holds a real relay connection: a login,
a build, a web-terminal session through the relay each show in the next scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.agents import SeededAgent, seed_agent, seeded_member
from tests.support.api import Api
from tests.support.postgres import create_database, drop_database
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer, live_server
from tests.support.terminal import terminal_url, web_terminal

pytestmark = pytest.mark.integration

# docs/metrics.md: every family a scrape of this server must hold, with its labels.
EXPECTED: dict[str, set[str]] = {
    "coderd_api_requests_processed_total": {"code", "method", "path"},
    "coderd_api_request_latencies_seconds": {"method", "path"},
    "coderd_api_concurrent_requests": set(),
    "coderd_api_concurrent_websockets": set(),
    "coderd_provisionerd_jobs_current": {"provisioner"},
    "appliance_provisioner_jobs_queued": set(),
    "coderd_provisionerd_num_daemons": set(),
    "coderd_provisionerd_job_timings_seconds": {"provisioner", "status"},
    "coderd_provisioner_job_queue_wait_seconds": {"provisioner", "job_type"},
    "coderd_workspace_builds_total": {"status", "template_name", "template_version", "workspace_name",
                                      "workspace_owner", "workspace_transition"},
    "coderd_agents_up": {"template_name", "username", "workspace_name"},
    "coderd_agents_connections": {"agent_name", "username", "workspace_name", "lifecycle_state", "status"},
    "appliance_relay_up": {"relay"},
    "appliance_relay_peers": {"relay"},
    "appliance_relay_bytes_total": {"relay", "direction"},
    "appliance_relay_packets_total": {"relay", "direction"},
    "appliance_relay_drops_total": {"relay"},
    "appliance_relay_refusals_total": {"relay"},
    "appliance_certificate_expiry_seconds": {"name"},
    "appliance_registry_up": set(),
    "appliance_database_up": set(),
    "coderd_build_info": {"version", "revision"},
}
HISTOGRAM_LABELS = {"le"}


@dataclass
class Site:
    server: LiveServer
    owner: Api
    member: Api
    seeded: SeededAgent
    conninfo: str
    scraper: str  # the owner's token of scope 'metrics'


def _metrics_token(api: Api, name: str = "prometheus") -> str:
    made = api.post("/api/v2/users/me/keys/tokens", json={"token_name": name, "scope": "metrics"})
    assert made.status_code == 201, made.text
    assert made.json()["token"]["scope"] == "metrics"
    return str(made.json()["key"])


@pytest.fixture(scope="module")
def site(admin_conninfo: str, template_db: str, site_pki: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    conninfo = create_database(admin_conninfo, "metrics_scrape", template=template_db)
    with live_server(conninfo, pki_dir=site_pki) as server:
        Api(server.url).create_first_user("owner")
        owner = Api(server.url, Api(server.url).login("owner"))
        member = seeded_member(owner, conninfo)
        seeded = seed_agent(member, conninfo)
        agent = StandInAgent(server.url, seeded.token, str(tmp_path_factory.mktemp("home")))
        with agent_in_thread(agent):
            yield Site(server, owner, member, seeded, conninfo, _metrics_token(owner))
    drop_database(admin_conninfo, "metrics_scrape")


def scrape(site: Site) -> list[Sample]:
    answer = Api(site.server.url).get("/api/v2/metrics", token=site.scraper)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")  # Prometheus' text format
    return [s for family in text_string_to_metric_families(answer.text) for s in family.samples]


def value(samples: list[Sample], metric: str, /, **labels: str) -> float:
    """The sum of `metric`'s samples whose labels include `labels`."""
    return sum(s.value for s in samples if s.name == metric and labels.items() <= s.labels.items())


def eventually(check: Callable[[], bool], within: float = 15.0) -> None:
    """The relay writes its counters every 5 s: wait for the next write."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the scrape never showed it"
        time.sleep(0.5)


def test_the_scrape_parses_and_holds_every_documented_family_with_its_labels(site: Site) -> None:
    answer = Api(site.server.url).get("/api/v2/metrics", token=site.scraper)
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    # The parser names counters without _total; compare by the sample names the text carries.
    by_sample = {s.name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum"): s
                 for f in families.values() for s in f.samples}
    missing = sorted(set(EXPECTED) - set(by_sample))
    assert not missing, f"families missing from the scrape: {missing}"
    for name, labels in EXPECTED.items():
        assert set(by_sample[name].labels) - HISTOGRAM_LABELS == labels, (name, by_sample[name].labels)
    samples = scrape(site)
    assert value(samples, "appliance_database_up") == 1
    assert value(samples, "coderd_build_info") == 1
    assert value(samples, "appliance_certificate_expiry_seconds", name="intermediate-ca") > 86400


def test_route_templates_label_requests_never_raw_paths(site: Site) -> None:
    me = site.owner.get("/api/v2/users/me").json()
    assert site.owner.get(f"/api/v2/users/{me['id']}").status_code == 200
    assert site.owner.get("/api/v2/no-such-route/12345").status_code == 404
    samples = scrape(site)
    paths = {s.labels["path"] for s in samples if s.name == "coderd_api_requests_processed_total"}
    assert "/api/v2/users/<user>" in paths
    assert "unknown" in paths
    assert not [p for p in paths if me["id"] in p or "12345" in p], paths


def test_a_login_moves_the_request_counter(site: Site) -> None:
    counter, login = "coderd_api_requests_processed_total", {"path": "/api/v2/users/login", "method": "POST"}
    before = scrape(site)
    site.owner.login("dev")
    after = scrape(site)
    assert value(after, counter, **login) - value(before, counter, **login) == 1
    assert value(after, "coderd_api_request_latencies_seconds_count", path="/api/v2/users/login") > 0


def test_a_build_moves_the_builds_counter(site: Site) -> None:
    builds = "coderd_workspace_builds_total"
    built = {"workspace_name": "second", "workspace_owner": "dev", "template_name": "agents",
             "workspace_transition": "start", "status": "succeeded"}
    assert value(scrape(site), builds, **built) == 0
    seed_agent(site.member, site.conninfo, name="second")
    samples = scrape(site)
    assert value(samples, builds, **built) == 1
    assert value(samples, "coderd_provisionerd_job_timings_seconds_count", status="succeeded") >= 2


def test_a_relay_session_moves_the_relay_and_websocket_metrics(site: Site) -> None:
    eventually(lambda: value(scrape(site), "coderd_agents_connections", workspace_name="dev", status="connected") == 1)
    assert value(scrape(site), "coderd_agents_up", workspace_name="dev") == 1
    before = scrape(site)
    url = terminal_url(site.server.url, site.seeded.agent_id)

    async def session() -> float:
        async with web_terminal(url, token=site.member.token or "", origin=None, cookie=False) as screen:
            await screen.type("echo metrics-$((6*7))\r")
            await screen.until("metrics-42")
            return value(await asyncio.to_thread(scrape, site), "coderd_api_concurrent_websockets")

    assert asyncio.run(asyncio.wait_for(session(), 60)) == 1
    assert value(scrape(site), "coderd_api_concurrent_websockets") == 0
    sent = "appliance_relay_bytes_total"  # the module's one relay: the server's own, named after the host
    eventually(lambda: value(scrape(site), sent, direction="out") > value(before, sent, direction="out"))
    samples = scrape(site)
    assert value(samples, "appliance_relay_packets_total") > value(before, "appliance_relay_packets_total")
    assert value(samples, "appliance_relay_up") == 1


def test_only_a_metrics_token_of_an_owner_or_auditor_scrapes(site: Site) -> None:
    anonymous = Api(site.server.url).get("/api/v2/metrics")
    assert anonymous.status_code == 401
    assert "scope 'metrics'" in anonymous.json()["message"]
    session = site.owner.get("/api/v2/metrics")
    assert session.status_code == 403
    assert "--scope metrics" in session.json()["detail"]
    auditor = site.owner.create_user(roles=["auditor"])
    as_auditor = site.owner.as_user(site.owner.login(auditor["username"]))
    assert Api(site.server.url).get("/api/v2/metrics", token=_metrics_token(as_auditor)).status_code == 200
    refused = Api(site.server.url).get("/api/v2/metrics", token=_metrics_token(site.member, "mine"))
    assert refused.status_code == 403
    assert "only owners and auditors" in refused.json()["message"]


def test_a_metrics_token_opens_nothing_else(site: Site) -> None:
    scraper = Api(site.server.url, site.scraper)
    for method, path in (("GET", "/api/v2/users/me"), ("GET", "/api/v2/audit"),
                         ("POST", "/api/v2/users/me/keys/tokens")):
        refused = scraper.request(method, path, json={"token_name": "escalate"})
        assert refused.status_code == 403, (path, refused.text)
        assert "opens only GET /api/v2/metrics" in refused.json()["message"]
    terminal = terminal_url(site.server.url, site.seeded.agent_id)

    async def open_terminal() -> None:
        async with web_terminal(terminal, token=site.scraper, origin=None, cookie=False):
            pytest.fail("a metrics token opened a terminal")
    with pytest.raises(Exception, match="403"):
        asyncio.run(open_terminal())
