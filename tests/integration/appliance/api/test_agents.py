"""The agent API and pairing over real HTTP and a real PostgreSQL: what an agent reports with its token,
who may pair with it, and the SSH certificate a pairing gets."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncssh
import psycopg
import pytest

from appliance.workspaces.agent_status import INACTIVE_AFTER
from tests.support.agents import METADATA, SeededAgent, node_key, seed_agent, seed_template
from tests.support.api import Api

pytestmark = pytest.mark.integration
ME = "/api/v2/workspaceagents/me"


def _ssh_key() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()


def _now() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture
def member(owner_api: Api, shared_conninfo: str) -> Api:
    seed_template(shared_conninfo)
    owner_api.create_user(username="dev")
    return owner_api.as_user(owner_api.login("dev"))


@pytest.fixture
def agent(member: Api, shared_conninfo: str) -> SeededAgent:
    return seed_agent(member, shared_conninfo)


def _register(api: Api, agent: SeededAgent, key: str | None = None, host_key: str | None = None) -> Any:
    return api.post(ME + "/relay", token=agent.token,
                    json={"node_key": key or node_key(), "ssh_host_key": host_key or _ssh_key(), "version": "0.1"})


def _peers(conninfo: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT encode(node_key, 'hex'), kind, api_key_id FROM relay_peers"
                            " ORDER BY kind, created_at").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


# --- agent token authentication ---

def test_the_manifest_tells_the_agent_what_to_run_and_whom_to_trust(member: Api, agent: SeededAgent,
                                                                       server: Any) -> None:
    found = member.get(ME + "/manifest", token=agent.token)
    assert found.status_code == 200, found.text
    manifest = found.json()
    assert (manifest["agent_id"], manifest["workspace_name"], manifest["owner_name"]) == (agent.agent_id, "dev", "dev")
    assert (manifest["directory"], manifest["startup_script"], manifest["env"]) == (
        "/home/dev", "echo ready", {"GREETING": "hello"})
    assert (manifest["connection_timeout_seconds"], manifest["startup_script_timeout_seconds"]) == (30, 90)
    assert manifest["metadata"] == METADATA
    assert manifest["derp_map"]["RelayURL"] == server.config.access_url.rstrip("/") + "/derp"
    assert manifest["derp_map"]["Regions"]["999"]["Nodes"][0]["STUNPort"] == -1
    assert asyncssh.import_public_key(manifest["ssh_user_ca"]).algorithm == b"ssh-ed25519"
    # The CA is made once: every manifest names the same one.
    assert member.get(ME + "/manifest", token=agent.token).json()["ssh_user_ca"] == manifest["ssh_user_ca"]


@pytest.mark.parametrize(("headers", "message"), [
    pytest.param({}, "No agent token", id="no token"),
    pytest.param({"Authorization": "Bearer not-a-token"}, "not known", id="an unknown token"),
])
def test_an_agent_route_without_a_live_token_is_401_with_a_hint(api: Api, headers: dict[str, str],
                                                                  message: str) -> None:
    refused = api.get(ME + "/manifest", headers=headers)
    assert refused.status_code == 401
    assert message in refused.json()["message"] and refused.json()["detail"]


def test_a_users_own_session_is_no_agent_token(member: Api, agent: SeededAgent) -> None:
    assert member.get(ME + "/manifest").status_code == 401


def test_a_stopped_workspaces_token_is_refused_and_its_relay_keys_forgotten(
        member: Api, agent: SeededAgent, shared_conninfo: str) -> None:
    assert _register(member, agent).status_code == 200
    stopped = member.post(f"/api/v2/workspaces/{agent.workspace_id}/builds", json={"transition": "stop"})
    assert stopped.status_code == 201, stopped.text
    refused = member.get(ME + "/manifest", token=agent.token)
    assert refused.status_code == 401
    assert "no longer live" in refused.json()["message"]
    assert _register(member, agent).status_code == 401
    assert _peers(shared_conninfo) == []


# --- relay registration ---

def test_registering_again_replaces_the_agents_key_and_tells_the_relay(
        member: Api, agent: SeededAgent, shared_conninfo: str) -> None:
    first, second = node_key(), node_key()
    with psycopg.connect(shared_conninfo, autocommit=True) as listener:
        listener.execute("LISTEN relay_peers")
        host_key = _ssh_key()
        registered = _register(member, agent, first, host_key)
        assert registered.status_code == 200, registered.text
        assert datetime.fromisoformat(registered.json()["expires_at"]) > datetime.now(UTC) + timedelta(hours=23)
        assert _register(member, agent, second).status_code == 200
        notices = [json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=3)]
    assert [(n["op"], n["node_key"], n["kind"]) for n in notices] == [
        ("INSERT", first, "agent"), ("DELETE", first, "agent"), ("INSERT", second, "agent")]
    assert {n["agent_id"] for n in notices} == {agent.agent_id}
    assert _peers(shared_conninfo) == [(second, "agent", None)]


def test_the_host_key_is_stored_normalised_for_clients_to_pin(member: Api, agent: SeededAgent,
                                                              shared_conninfo: str) -> None:
    host_key = _ssh_key()
    assert _register(member, agent, host_key=host_key + "  ").status_code == 200
    with psycopg.connect(shared_conninfo) as conn:
        row = conn.execute("SELECT ssh_host_key, version FROM workspace_agents WHERE id = %s",
                           (agent.agent_id,)).fetchone()
    assert row == (host_key, "0.1")


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"node_key": "ab" * 31, "ssh_host_key": "x"}, "node_key", id="a node key of 62 hex digits"),
    pytest.param({"node_key": "AB" * 32, "ssh_host_key": "x"}, "node_key", id="a node key in upper case"),
    pytest.param({"node_key": "zz" * 32, "ssh_host_key": "x"}, "node_key", id="a node key that is not hex"),
    pytest.param({"node_key": "ab" * 32, "ssh_host_key": "ssh-ed25519 AAAAnotakey"}, "ssh_host_key",
                 id="a host key that does not parse"),
    pytest.param({"node_key": "ab" * 32, "ssh_host_key": "ssh-ed25519 AAAA\u0000"}, "ssh_host_key",
                 id="a NUL byte in the host key"),
])
def test_bad_registrations_are_a_400_naming_the_field(member: Api, agent: SeededAgent, body: dict[str, str],
                                                      field: str) -> None:
    refused = member.post(ME + "/relay", token=agent.token, json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["validations"][0]["field"] == field
    assert refused.json()["detail"]


def test_malformed_json_is_a_400(member: Api, agent: SeededAgent) -> None:
    refused = member.post(ME + "/relay", token=agent.token, data=b'{"node_key": ',
                          headers={"Content-Type": "application/json"})
    assert refused.status_code == 400
    assert "not valid JSON" in refused.json()["message"]


# --- lifecycle, logs, metadata ---

def test_lifecycle_reports_stamp_started_and_ready(member: Api, agent: SeededAgent) -> None:
    started, ready = datetime.now(UTC) - timedelta(seconds=5), datetime.now(UTC)
    for state, at in (("starting", started), ("ready", ready)):
        reported = member.post(ME + "/report-lifecycle", token=agent.token,
                               json={"state": state, "changed_at": at.isoformat()})
        assert reported.status_code == 204, reported.text
    shown = member.get(f"/api/v2/workspaceagents/{agent.agent_id}").json()
    assert shown["lifecycle_state"] == "ready"
    assert datetime.fromisoformat(shown["started_at"]) == started
    assert datetime.fromisoformat(shown["ready_at"]) == ready
    bad = member.post(ME + "/report-lifecycle", token=agent.token, json={"state": "asleep", "changed_at": _now()})
    assert bad.status_code == 400 and bad.json()["validations"][0]["field"] == "state"


def test_logs_keep_their_order_and_after_reads_only_newer_lines(member: Api, agent: SeededAgent,
                                                                shared_conninfo: str) -> None:
    with psycopg.connect(shared_conninfo, autocommit=True) as listener:
        listener.execute("LISTEN workspace_agent_logs")
        for batch in (["one", "two", "three"], ["four", "five"]):
            sent = member.request("PATCH", ME + "/logs", token=agent.token,
                                  json={"logs": [{"created_at": _now(), "output": line} for line in batch]})
            assert sent.status_code == 204, sent.text
        woken = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert woken == [agent.agent_id, agent.agent_id]
    logs = member.get(f"/api/v2/workspaceagents/{agent.agent_id}/logs").json()["logs"]
    assert [line["output"] for line in logs] == ["one", "two", "three", "four", "five"]
    after = member.get(f"/api/v2/workspaceagents/{agent.agent_id}/logs", params={"after": logs[2]["id"]}).json()
    assert [line["output"] for line in after["logs"]] == ["four", "five"]


def test_a_nul_byte_in_a_log_line_is_refused_and_nothing_of_the_batch_is_kept(member: Api,
                                                                               agent: SeededAgent) -> None:
    refused = member.request("PATCH", ME + "/logs", token=agent.token, json={"logs": [
        {"created_at": _now(), "output": "fine"}, {"created_at": _now(), "output": "bad\u0000"}]})
    assert refused.status_code == 400
    assert refused.json()["validations"][0]["field"] == "logs.1.output"
    assert member.get(f"/api/v2/workspaceagents/{agent.agent_id}/logs").json()["logs"] == []


def test_a_startup_log_past_its_cap_is_refused_with_a_413(member: Api, agent: SeededAgent) -> None:
    batch = {"logs": [{"created_at": _now(), "output": "x" * 3000} for _ in range(200)]}
    assert member.request("PATCH", ME + "/logs", token=agent.token, json=batch).status_code == 204
    refused = member.request("PATCH", ME + "/logs", token=agent.token, json=batch)
    assert refused.status_code == 413
    assert "1 MiB" in refused.json()["message"] and refused.json()["detail"]
    assert len(member.get(f"/api/v2/workspaceagents/{agent.agent_id}/logs").json()["logs"]) == 200


def test_metadata_results_are_upserted_and_shown_with_their_description(member: Api, agent: SeededAgent) -> None:
    for value in ("0.10 0.20 0.30", "1.00 0.50 0.25"):
        sent = member.post(ME + "/metadata", token=agent.token,
                           json={"results": [{"key": "load", "value": value, "collected_at": _now()}]})
        assert sent.status_code == 204, sent.text
    [shown] = member.get(f"/api/v2/workspaceagents/{agent.agent_id}").json()["metadata"]
    assert shown["description"] == METADATA[0]
    assert (shown["value"], shown["error"]) == ("1.00 0.50 0.25", "")
    unknown = member.post(ME + "/metadata", token=agent.token,
                          json={"results": [{"key": "nope", "value": "1", "collected_at": _now()}]})
    assert unknown.status_code == 400
    assert unknown.json()["validations"][0]["field"] == "results.0.key"


# --- status, as users see it ---

def _set_connection(conninfo: str, agent: SeededAgent, **stamps: datetime | None) -> None:
    with psycopg.connect(conninfo) as conn:
        for column, value in stamps.items():
            conn.execute(f"UPDATE workspace_agents SET {column} = %s WHERE id = %s",  # noqa: S608 -- test's own names
                         (value, agent.agent_id))


def test_status_follows_what_the_relay_recorded(member: Api, agent: SeededAgent, shared_conninfo: str) -> None:
    url = f"/api/v2/workspaceagents/{agent.agent_id}"
    shown = member.get(url).json()
    assert (shown["status"], shown["troubleshooting_hint"]) == ("connecting", "")
    now = datetime.now(UTC)
    _set_connection(shared_conninfo, agent, first_connected_at=now, last_connected_at=now)
    assert member.get(url).json()["status"] == "connected"
    _set_connection(shared_conninfo, agent, disconnected_at=now + timedelta(seconds=1))
    gone = member.get(url).json()
    assert gone["status"] == "disconnected"
    assert "container" in gone["troubleshooting_hint"] and gone["troubleshooting_hint"].endswith(
        "https://wiki.example/agents")
    _set_connection(shared_conninfo, agent, first_connected_at=None, last_connected_at=None, disconnected_at=None,
                    created_at=now - timedelta(seconds=31))
    assert member.get(url).json()["status"] == "timeout"
    workspace = member.get(f"/api/v2/workspaces/{agent.workspace_id}").json()
    [listed] = workspace["latest_build"]["resources"][0]["agents"]
    assert (listed["status"], listed["lifecycle_state"]) == ("timeout", "created")
    _set_connection(shared_conninfo, agent, first_connected_at=now, last_connected_at=now - INACTIVE_AFTER * 2)
    assert member.get(url).json()["status"] == "disconnected"


# --- pairing ---

def _pair(api: Api, agent: SeededAgent, client_key: str | None = None, **kwargs: Any) -> Any:
    return api.post(f"/api/v2/workspaceagents/{agent.agent_id}/pair",
                    json={"node_key": client_key or node_key(), "ssh_public_key": _ssh_key()}, **kwargs)


def test_pairing_before_the_agent_connected_is_a_409_with_a_hint(member: Api, agent: SeededAgent) -> None:
    refused = _pair(member, agent)
    assert refused.status_code == 409
    assert "has not connected yet" in refused.json()["message"] and refused.json()["detail"]


def test_only_the_workspaces_owner_and_site_owners_may_pair(owner_api: Api, member: Api, agent: SeededAgent,
                                                            shared_conninfo: str) -> None:
    agent_key = node_key()
    assert _register(member, agent, agent_key).status_code == 200
    owner_api.create_user(username="other")
    other = owner_api.as_user(owner_api.login("other"))
    assert _pair(other, agent).status_code == 404
    assert other.get(f"/api/v2/workspaceagents/{agent.agent_id}").status_code == 404
    owner_api.create_user(username="tadmin", roles=["template-admin"])
    reader = owner_api.as_user(owner_api.login("tadmin"))
    assert reader.get(f"/api/v2/workspaceagents/{agent.agent_id}").status_code == 200
    assert _pair(reader, agent).status_code == 403
    for allowed in (member, owner_api):
        paired = _pair(allowed, agent)
        assert paired.status_code == 200, paired.text
        assert paired.json()["agent_node_key"] == agent_key
    kinds = [kind for _, kind, _ in _peers(shared_conninfo)]
    assert kinds == ["agent", "client", "client"]
    with psycopg.connect(shared_conninfo) as conn:
        audited = conn.execute("SELECT count(*) FROM audit_logs WHERE action = 'connect'"
                               " AND resource_id = %s", (agent.workspace_id,)).fetchone()
    assert audited == (2,)


def test_a_client_key_cannot_take_over_an_agents_key(member: Api, agent: SeededAgent) -> None:
    agent_key = node_key()
    assert _register(member, agent, agent_key).status_code == 200
    refused = _pair(member, agent, agent_key)
    assert refused.status_code == 409
    assert refused.json()["validations"][0]["field"] == "node_key"


def test_the_certificate_is_signed_by_the_manifests_ca_for_the_agent_only(member: Api, agent: SeededAgent) -> None:
    host_key = _ssh_key()
    assert _register(member, agent, host_key=host_key).status_code == 200
    ca = member.get(ME + "/manifest", token=agent.token).json()["ssh_user_ca"]
    client = asyncssh.generate_private_key("ssh-ed25519")
    paired = member.post(f"/api/v2/workspaceagents/{agent.agent_id}/pair", json={
        "node_key": node_key(), "ssh_public_key": client.export_public_key("openssh").decode().strip()}).json()
    assert paired["agent_ssh_host_key"] == host_key
    cert = asyncssh.import_certificate(paired["ssh_certificate"])  # checks the CA's signature
    assert cert.signing_key.public_data == asyncssh.import_public_key(ca).public_data
    assert cert.key.public_data == client.public_data
    assert cert.principals == [agent.agent_id]
    cert.validate(asyncssh.public_key.CERT_TYPE_USER, agent.agent_id)
    with pytest.raises(ValueError, match="principal"):
        cert.validate(asyncssh.public_key.CERT_TYPE_USER, "another-agent")
    expires = datetime.fromisoformat(paired["expires_at"])
    assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12)


def test_an_agents_ssh_server_trusting_the_ca_accepts_the_certificate(member: Api, agent: SeededAgent) -> None:
    """The session contract end to end on loopback: the agent's authorized_client_keys line, the client's cert."""
    host = asyncssh.generate_private_key("ssh-ed25519")
    assert _register(member, agent, host_key=host.export_public_key("openssh").decode().strip()).status_code == 200
    ca = member.get(ME + "/manifest", token=agent.token).json()["ssh_user_ca"]
    client = asyncssh.generate_private_key("ssh-ed25519")
    paired = member.post(f"/api/v2/workspaceagents/{agent.agent_id}/pair", json={
        "node_key": node_key(), "ssh_public_key": client.export_public_key("openssh").decode().strip()}).json()
    trusted = asyncssh.import_authorized_keys(f'cert-authority,principals="{agent.agent_id}" {ca}\n')
    asyncio.run(_ssh_round_trip(host, trusted, client, paired))


async def _ssh_round_trip(host: asyncssh.SSHKey, trusted: Any, client: asyncssh.SSHKey, paired: dict[str, Any]) -> None:
    async def handle(process: asyncssh.SSHServerProcess[str]) -> None:
        process.stdout.write("hello from the agent\n")
        process.exit(0)

    server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[host], authorized_client_keys=trusted,
                                   process_factory=handle)
    port = server.sockets[0].getsockname()[1]
    pinned = asyncssh.import_known_hosts(f"[127.0.0.1]:{port} {paired['agent_ssh_host_key']}\n")
    cert = asyncssh.import_certificate(paired["ssh_certificate"])
    try:
        async with asyncssh.connect("127.0.0.1", port, username=paired["ssh_username"], known_hosts=pinned,
                                    client_keys=[(client, cert)]) as conn:
            result = await conn.run("anything")
        assert result.stdout == "hello from the agent\n"
    finally:
        server.close()
        await server.wait_closed()


def test_revoking_the_token_that_paired_forgets_its_client_keys(owner_api: Api, member: Api, agent: SeededAgent,
                                                                shared_conninfo: str) -> None:
    assert _register(member, agent).status_code == 200
    made = member.post("/api/v2/users/me/keys/tokens", json={"token_name": "cli"}).json()
    assert _pair(member, agent, token=made["key"]).status_code == 200
    assert _pair(member, agent).status_code == 200  # the session's own pairing stays
    assert [(kind, key_id) for _, kind, key_id in _peers(shared_conninfo)].count(("client", made["token"]["id"])) == 1
    assert member.delete(f"/api/v2/users/me/keys/{made['token']['id']}").status_code == 200
    left = _peers(shared_conninfo)
    assert [kind for _, kind, _ in left] == ["agent", "client"]
    assert made["token"]["id"] not in [key_id for _, _, key_id in left]


def test_a_pairing_expires_with_the_key_that_made_it(member: Api, agent: SeededAgent) -> None:
    assert _register(member, agent).status_code == 200
    made = member.post("/api/v2/users/me/keys/tokens", json={"token_name": "brief", "lifetime": "1h"}).json()
    paired = _pair(member, agent, token=made["key"]).json()
    assert datetime.fromisoformat(paired["expires_at"]) <= datetime.now(UTC) + timedelta(hours=1)


def test_a_bad_client_ssh_key_is_a_400(member: Api, agent: SeededAgent) -> None:
    refused = member.post(f"/api/v2/workspaceagents/{agent.agent_id}/pair",
                          json={"node_key": node_key(), "ssh_public_key": "ssh-rsa notakey"})
    assert refused.status_code == 400
    assert refused.json()["validations"][0]["field"] == "ssh_public_key"


def test_an_agent_that_is_no_uuid_is_404(member: Api) -> None:
    assert member.get("/api/v2/workspaceagents/not-a-uuid").status_code == 404


# --- the relay's region and counters ---

def test_the_derp_map_and_relay_counters(owner_api: Api, member: Api, shared_conninfo: str, server: Any) -> None:
    region = member.get("/api/v2/derp-map").json()["Regions"]["999"]
    assert region["RegionCode"] == "appliance"
    assert member.get("/api/v2/relay").status_code == 403
    # Another relay's name: the server's own relay rewrites the row named "embedded" every few seconds.
    with psycopg.connect(shared_conninfo) as conn:
        conn.execute("INSERT INTO relay_stats (relay_name, region_id, started_at, updated_at, counters)"
                     " VALUES ('edge-2', 999, now(), now(), %s)",
                     (json.dumps({"peers": 3, "bytes_in": 1000, "drops": 2, "refusals": 1}),))
    stats = owner_api.get("/api/v2/relay").json()
    assert stats["derp_map"]["RelayURL"].endswith("/derp")
    edge = {relay["relay_name"]: relay for relay in stats["relays"]}["edge-2"]
    assert edge["counters"] == {"peers": 3, "bytes_in": 1000, "drops": 2, "refusals": 1}

