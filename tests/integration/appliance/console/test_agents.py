"""The console's agent panels on the workspace page, and the relay admin page, over real HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest
import requests

from tests.support.agents import SeededAgent, seed_agent, seed_template
from tests.support.api import Api, console_session
from tests.support.server import LiveServer

pytestmark = pytest.mark.integration


def _browser(server: LiveServer, username: str) -> requests.Session:
    return console_session(server.url, username)


@pytest.fixture
def agent(owner_api: Api, shared_conninfo: str) -> SeededAgent:
    seed_template(shared_conninfo)
    return seed_agent(owner_api, shared_conninfo)


def test_the_workspace_page_shows_each_agents_status_lifecycle_log_and_metadata(
        server: LiveServer, owner_api: Api, agent: SeededAgent, shared_conninfo: str) -> None:
    me = "/api/v2/workspaceagents/me"
    now = datetime.now(UTC).isoformat()
    owner_api.post(me + "/report-lifecycle", token=agent.token, json={"state": "starting", "changed_at": now})
    owner_api.request("PATCH", me + "/logs", token=agent.token, json={"logs": [
        {"created_at": now, "output": "installing <tools>"}, {"created_at": now, "output": "done", "level": "warn"}]})
    owner_api.post(me + "/metadata", token=agent.token,
                   json={"results": [{"key": "load", "value": "0.42", "collected_at": now}]})
    browser = _browser(server, "owner")
    page = browser.get(f"{server.url}/workspaces/{agent.workspace_id}", timeout=10)
    assert page.status_code == 200
    panel = page.text[page.text.index(f'id="agent-{agent.agent_id}"'):]
    assert 'data-agent-field="status">connecting<' in panel
    assert 'data-agent-field="lifecycle_state">starting<' in panel
    assert "installing &lt;tools&gt;" in panel and '<span class="line warn">done</span>' in panel
    assert "<dt>Load</dt>" in panel and ">0.42</dd>" in panel
    assert "agents.js" in page.text
    # The page follows the agent through the same JSON, with the browser's session cookie.
    polled = browser.get(f"{server.url}/api/v2/workspaceagents/{agent.agent_id}/logs", params={"after": 1},
                         timeout=10)
    assert [line["output"] for line in polled.json()["logs"]] == ["done"]
    assert browser.get(f"{server.url}/static/agents.js", timeout=10).status_code == 200


def test_an_agent_that_timed_out_shows_the_troubleshooting_hint(server: LiveServer, agent: SeededAgent,
                                                                 shared_conninfo: str) -> None:
    with psycopg.connect(shared_conninfo) as conn:
        conn.execute("UPDATE workspace_agents SET created_at = now() - interval '1 hour' WHERE id = %s",
                     (agent.agent_id,))
    page = _browser(server, "owner").get(f"{server.url}/workspaces/{agent.workspace_id}", timeout=10).text
    panel = page[page.index(f'id="agent-{agent.agent_id}"'):]
    assert 'data-agent-field="status">timeout<' in panel
    hint = panel[panel.index('data-agent-field="troubleshooting_hint"'):].split("</p>")[0]
    assert "hidden" not in hint.split(">")[0]
    assert "/bin/appliance-agent-linux-amd64" in hint and "https://wiki.example/agents" in hint


def _relay_page_before_any_report(browser: requests.Session, server: LiveServer, conninfo: str) -> str:
    """The page right after relay_stats is emptied. The server's own relay upserts its row every
    STATS_SECONDS, so a write landing between the DELETE and the GET is tried again."""
    for _ in range(5):
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("DELETE FROM relay_stats")
        page = browser.get(server.url + "/admin/relay", timeout=10)
        assert page.status_code == 200
        if "data-relay=" not in page.text:
            return page.text
    raise AssertionError("the server's relay reported between every DELETE and GET of five tries")


def test_the_relay_page_shows_the_region_and_live_counters_to_owners(server: LiveServer, owner_api: Api,
                                                                      shared_conninfo: str) -> None:
    browser = _browser(server, "owner")
    empty = _relay_page_before_any_report(browser, server, shared_conninfo)
    assert 'id="relay-missing"' in empty
    assert 'href="/admin/relay"' in empty  # linked from the navigation
    # Another relay's name: the server's own relay rewrites the row named "embedded" every few seconds.
    with psycopg.connect(shared_conninfo) as conn:
        conn.execute("INSERT INTO relay_stats (relay_name, region_id, started_at, updated_at, counters)"
                     " VALUES ('edge-2', 999, now(), now(), %s)",
                     (json.dumps({"peers": 4, "bytes_in": 2048, "drops": 7, "refusals": 3, "rate_limited": 1}),))
    page = browser.get(server.url + "/admin/relay", timeout=10).text
    assert "999 · Appliance Embedded Relay" in page and "/derp</code>" in page
    assert 'id="relay-missing"' not in page
    for name, value in (("peers", 4), ("bytes_in", 2048), ("drops", 7), ("refusals", 3), ("rate_limited", 1)):
        assert f'data-relay="edge-2" data-counter="{name}">{value}<' in page
    assert "relay.js" in page


def test_members_do_not_see_the_relay_page(server: LiveServer, owner_api: Api) -> None:
    owner_api.create_user(username="plain")
    browser = _browser(server, "plain")
    assert browser.get(server.url + "/admin/relay", timeout=10).status_code == 403
    assert 'href="/admin/relay"' not in browser.get(server.url + "/workspaces", timeout=10).text
