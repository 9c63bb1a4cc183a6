"""What the agent process reports from inside its workspace, seen through the API and the console: the TCP
ports listening there as servers start and stop, and an app's health from its healthcheck."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.agents import SeededAgent, agent_events, agent_process, seed_agent, seeded_member, wait_agent
from tests.support.api import Api, console_session
from tests.support.loopback_servers import http_server
from tests.support.postgres import free_port
from tests.support.server import LiveServer

pytestmark = pytest.mark.integration


def _until(what: Callable[[], Any], timeout: float = 20.0, home: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        if time.monotonic() > deadline:
            log = (home / "agent.log").read_text()[-3000:] if home else ""
            raise AssertionError(f"never happened: {what}\n{log}")
        time.sleep(0.3)
    return found


def _browser(server: LiveServer, username: str) -> requests.Session:
    return console_session(server.url, username)


@pytest.fixture
def member(owner_api: Api, shared_conninfo: str) -> Api:
    return seeded_member(owner_api, shared_conninfo)


@pytest.fixture
def app_port() -> int:
    return free_port()


@pytest.fixture
def seeded(member: Api, shared_conninfo: str, tmp_path: Path, app_port: int) -> SeededAgent:
    web = {"slug": "web", "display_name": "Web", "url": f"http://127.0.0.1:{app_port}/",
           "healthcheck": [{"url": f"http://127.0.0.1:{app_port}/healthz", "interval": 1, "threshold": 2}]}
    docs = {"slug": "docs", "url": "http://127.0.0.1:1/"}
    return seed_agent(member, shared_conninfo, name="box", dir=str(tmp_path / "work"), apps=[web, docs])


@pytest.fixture
def running(server: LiveServer, member: Api, seeded: SeededAgent, tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    with agent_process(server.url, seeded.token, home):
        wait_agent(member, seeded.agent_id, lambda a: a["status"] == "connected", home=home)
        yield home


def _ports(api: Api, seeded: SeededAgent) -> dict[int, str]:
    found = api.get(f"/api/v2/workspaceagents/{seeded.agent_id}/listening-ports")
    assert found.status_code == 200, found.text
    return {p["port"]: p["process_name"] for p in found.json()["ports"]}


def _apps(api: Api, seeded: SeededAgent) -> dict[str, str]:
    workspace = api.get(f"/api/v2/workspaces/{seeded.workspace_id}").json()
    return {app["slug"]: app["health"] for r in workspace["latest_build"]["resources"] for a in r["agents"]
            for app in a["apps"]}


def test_a_server_that_starts_shows_in_the_listening_ports_and_goes_when_it_stops(
        server: LiveServer, member: Api, seeded: SeededAgent, running: Path) -> None:
    browser = _browser(server, "dev")
    page = f"{server.url}/workspaces/{seeded.workspace_id}"
    with http_server() as port:
        ports = _until(lambda: port in _ports(member, seeded) and _ports(member, seeded), home=running)
        assert ports[port] == Path("/proc/self/comm").read_text().strip()  # this test's process serves it
        html = browser.get(page, timeout=10).text
        assert f'<li data-port="{port}">' in html
        assert f"appliance port-forward box --tcp {port}:{port}" in html
    _until(lambda: port not in _ports(member, seeded), home=running)
    assert f'<li data-port="{port}">' not in browser.get(page, timeout=10).text
    # The page keeps itself current through the same JSON (agents.js polls it).
    assert "/listening-ports" in browser.get(f"{server.url}/static/agents.js", timeout=10).text


def test_an_app_goes_initializing_healthy_then_unhealthy_after_threshold_failures(
        server: LiveServer, member: Api, seeded: SeededAgent, app_port: int, tmp_path: Path) -> None:
    assert _apps(member, seeded) == {"docs": "disabled", "web": "initializing"}
    home = tmp_path / "home"
    with ExitStack() as app, agent_process(server.url, seeded.token, home):
        app.enter_context(http_server(app_port))
        _until(lambda: _apps(member, seeded)["web"] == "healthy", home=home)
        page = _browser(server, "dev").get(f"{server.url}/workspaces/{seeded.workspace_id}", timeout=10).text
        assert 'class="badge health healthy" data-app-health' in page
        manifest = member.get("/api/v2/workspaceagents/me/manifest", token=seeded.token).json()
        assert {a["slug"]: a["healthcheck"] for a in manifest["apps"]} == {
            "docs": None, "web": {"url": f"http://127.0.0.1:{app_port}/healthz", "interval": 1, "threshold": 2}}
        app.close()  # the app's server stops; the agent keeps checking
        _until(lambda: _apps(member, seeded)["web"] == "unhealthy", home=home)
        assert _apps(member, seeded)["docs"] == "disabled"
    events = [e for e in agent_events(home) if e["event"] == "app_health_changed"]
    assert [(e["health"], e["failures"]) for e in events] == [("healthy", 0), ("unhealthy", 2)]
