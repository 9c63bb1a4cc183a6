"""The agent's listening-port and app-health reports over real HTTP and PostgreSQL: what is stored, who reads
it, and the 400 that names the field of a bad report."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from appliance.sdk.agents import MAX_LISTENING_PORTS
from tests.support.agents import SeededAgent, seed_agent, seeded_member
from tests.support.api import Api

pytestmark = pytest.mark.integration
ME = "/api/v2/workspaceagents/me"
HEALTHCHECK = [{"url": "http://127.0.0.1:8080/healthz", "interval": 5, "threshold": 3}]


@pytest.fixture
def member(owner_api: Api, shared_conninfo: str) -> Api:
    return seeded_member(owner_api, shared_conninfo)


@pytest.fixture
def agent(member: Api, shared_conninfo: str) -> SeededAgent:
    return seed_agent(member, shared_conninfo, apps=[{"slug": "web", "url": "http://127.0.0.1:8080",
                                                      "healthcheck": HEALTHCHECK}])


def _connected(conninfo: str, agent: SeededAgent) -> None:
    """As the relay stamps an agent it holds a connection to."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("UPDATE workspace_agents SET first_connected_at = now(), last_connected_at = now()"
                     " WHERE id = %s", (agent.agent_id,))


def _app_ids(member: Api, agent: SeededAgent) -> dict[str, str]:
    manifest = member.get(ME + "/manifest", token=agent.token).json()
    return {app["slug"]: app["id"] for app in manifest["apps"]}


def test_reported_ports_are_shown_one_per_port_while_the_agent_is_connected(
        member: Api, agent: SeededAgent, shared_conninfo: str, owner_api: Api) -> None:
    ports = [{"port": 8080, "process_name": "python3"}, {"port": 22, "network": "tcp"}, {"port": 8080}]
    assert member.post(ME + "/listening-ports", token=agent.token, json={"ports": ports}).status_code == 204
    url = f"/api/v2/workspaceagents/{agent.agent_id}/listening-ports"
    assert member.get(url).json() == {"ports": []}  # not connected: it cannot say what listens now
    _connected(shared_conninfo, agent)
    expected = {"ports": [{"port": 22, "network": "tcp", "process_name": ""},
                          {"port": 8080, "network": "tcp", "process_name": "python3"}]}
    assert member.get(url).json() == expected
    assert owner_api.get(url).json() == expected  # site owners read every workspace
    owner_api.create_user(username="other")
    assert owner_api.as_user(owner_api.login("other")).get(url).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"ports": [{"port": p} for p in range(1, MAX_LISTENING_PORTS + 2)]}, "ports", id="too many ports"),
    pytest.param({"ports": [{"port": 80}, {"port": 70000}]}, "ports.1.port", id="a port past 65535"),
    pytest.param({"ports": [{"port": 0}]}, "ports.0.port", id="port 0"),
    pytest.param({"ports": [{"port": "http"}]}, "ports.0.port", id="a port that is no number"),
    pytest.param({"ports": [{"port": 80, "network": "udp"}]}, "ports.0.network", id="udp"),
    pytest.param({"ports": [{"port": 80, "process_name": "x\u001b[31m"}]}, "ports.0.process_name",
                 id="an escape in a process name"),
])
def test_a_bad_port_report_is_a_400_naming_the_field(member: Api, agent: SeededAgent, body: dict[str, Any],
                                                     field: str) -> None:
    refused = member.post(ME + "/listening-ports", token=agent.token, json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["validations"][0]["field"] == field


def test_app_health_reports_change_the_apps_state(member: Api, agent: SeededAgent) -> None:
    web = _app_ids(member, agent)["web"]
    assert _health(member, agent) == "initializing"
    for state in ("healthy", "unhealthy"):
        reported = member.post(ME + "/app-health", token=agent.token, json={"healths": {web: state}})
        assert reported.status_code == 204, reported.text
        assert _health(member, agent) == state


def _health(member: Api, agent: SeededAgent) -> str:
    workspace = member.get(f"/api/v2/workspaces/{agent.workspace_id}").json()
    [app] = [app for r in workspace["latest_build"]["resources"] for a in r["agents"] for app in a["apps"]]
    return str(app["health"])


def test_bad_app_health_reports_are_a_400_naming_the_field(member: Api, agent: SeededAgent) -> None:
    web = _app_ids(member, agent)["web"]
    stranger = "00000000-0000-4000-8000-000000000000"
    unknown = member.post(ME + "/app-health", token=agent.token, json={"healths": {stranger: "healthy"}})
    assert unknown.status_code == 400 and unknown.json()["validations"][0]["field"] == f"healths.{stranger}"
    bad_state = member.post(ME + "/app-health", token=agent.token, json={"healths": {web: "disabled"}})
    assert bad_state.status_code == 400 and bad_state.json()["validations"][0]["field"] == f"healths.{web}"
    many = {f"00000000-0000-4000-8000-{n:012d}": "healthy" for n in range(101)}
    too_many = member.post(ME + "/app-health", token=agent.token, json={"healths": many})
    assert too_many.status_code == 400 and too_many.json()["validations"][0]["field"] == "healths"
    assert _health(member, agent) == "initializing"  # nothing stored from a refused report
