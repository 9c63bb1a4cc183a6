"""The web terminal's WebSocket through the gateway and the relay to a stand-in agent: the same shell after
a reconnect, refusals before the upgrade, bad messages closed with a reason, and no plaintext on the relay.

The module's server has its access URL on a tap in front of itself, so the gateway dials the relay
through the tap (as it dials the access URL when installed) and the tap records every relayed byte.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.auth.web import SESSION_COOKIE
from appliance.sdk.terminal import MAX_MESSAGE_BYTES
from tests.support.agents import SeededAgent, seed_agent, seed_template
from tests.support.api import Api
from tests.support.installed import installed_layout
from tests.support.postgres import create_database, drop_database, free_port
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer, live_server
from tests.support.tap import Tap, tapped
from tests.support.terminal import terminal_url, web_terminal

pytestmark = pytest.mark.integration


@dataclass
class Site:
    server: LiveServer
    tap: Tap
    owner: Api
    member: Api
    seeded: SeededAgent
    conninfo: str

    @property
    def origin(self) -> str:
        return self.server.config.access_url  # the tap: what the browser's address bar would show

    def url(self, **query: Any) -> str:
        return terminal_url(self.server.url, self.seeded.agent_id, **query)


@pytest.fixture(scope="module")
def site(admin_conninfo: str, template_db: str, site_pki: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    conninfo = create_database(admin_conninfo, "gateway_terminal", template=template_db)
    port = free_port()
    with tapped("127.0.0.1", port) as tap, live_server(conninfo, port=port, pki_dir=site_pki,
                                                       access_url=tap.url) as server:
        seed_template(conninfo)
        owner = Api(server.url)
        owner.create_first_user("owner")
        owner = owner.as_user(owner.login("owner"))
        owner.create_user(username="dev")
        member = owner.as_user(owner.login("dev"))
        seeded = seed_agent(member, conninfo)
        agent = StandInAgent(server.url, seeded.token, str(tmp_path_factory.mktemp("home")), relay=tap.url)
        with agent_in_thread(agent):
            yield Site(server, tap, owner, member, seeded, conninfo)
    drop_database(admin_conninfo, "gateway_terminal")


def run(check: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(check(), 60))


def as_member(site: Site, **query: Any) -> Any:
    return web_terminal(site.url(**query), token=site.member.token or "", origin=site.origin)


def test_a_reconnect_finds_the_same_shell_and_the_relay_never_sees_the_marker(site: Site) -> None:
    marker = "marker-" + secrets.token_hex(6)
    reconnect = str(uuid.uuid4())
    relayed_before = len(site.tap.to_server) + len(site.tap.to_clients)

    async def check() -> None:
        async with as_member(site, reconnect=reconnect) as first:
            await first.type(f"echo {marker} $TERM\r")
            await first.until(f"{marker} xterm-256color")
            await first.type("echo pid-$$\r")
            pid = (await first.until(r"pid-(\d+)"))[1]
        async with as_member(site, reconnect=reconnect) as again:
            await again.until(f"{marker} xterm-256color")  # the scrollback, before anything new
            await again.type("echo again-$$\r")
            assert (await again.until(r"again-(\d+)"))[1] == pid

    run(check)
    relayed = bytes(site.tap.to_server) + bytes(site.tap.to_clients)
    assert len(relayed) - relayed_before > 1000  # the sessions went through the tapped relay
    assert marker.encode() not in relayed


def test_the_terminal_follows_a_resize(site: Site) -> None:
    async def check() -> None:
        async with as_member(site, width=90, height=20) as screen:
            await screen.type("echo size-$(stty size | tr ' ' x)\r")
            await screen.until("size-20x90")
            await screen.resize(120, 40)
            await screen.type("echo size-$(stty size | tr ' ' x)\r")
            await screen.until("size-40x120")
    run(check)


def test_a_bearer_token_needs_no_origin(site: Site) -> None:
    async def check() -> None:
        async with web_terminal(site.url(), token=site.member.token or "", origin=None, cookie=False) as screen:
            await screen.type("echo bearer-$((40+2))\r")
            await screen.until("bearer-42")
    run(check)


def _refusal(site: Site, url: str, token: str, origin: str | None) -> tuple[int, dict[str, Any]]:
    async def attempt() -> tuple[int, dict[str, Any]]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with web_terminal(url, token=token, origin=origin):
                pytest.fail("the WebSocket opened")
        async with aiohttp.ClientSession(cookies={SESSION_COOKIE: token}) as http, http.get(
                url, headers={"Origin": origin} if origin else {}) as plain:
            return refused.value.status, await plain.json()
    return asyncio.run(attempt())


@pytest.mark.parametrize("origin", ["http://evil.example", None], ids=["another origin", "no origin"])
def test_a_session_cookie_from_another_origin_is_refused(site: Site, origin: str | None) -> None:
    status, body = _refusal(site, site.url(), site.member.token or "", origin)
    assert status == 403
    assert "refuses a session cookie sent from origin" in body["message"]
    assert site.origin in body["detail"]


def test_another_member_gets_404_before_any_upgrade(site: Site) -> None:
    other = site.owner.as_user(site.owner.login(site.owner.create_user()["username"]))
    status, body = _refusal(site, site.url(), other.token or "", site.origin)
    assert status == 404
    assert body["message"] == f"Workspace agent {site.seeded.agent_id!r} does not exist."


def test_a_stopped_workspace_is_a_409_with_the_start_hint(site: Site) -> None:
    stopped = seed_agent(site.member, site.conninfo, name=f"stopped{secrets.token_hex(3)}")
    response = site.member.post(f"/api/v2/workspaces/{stopped.workspace_id}/builds", json={"transition": "stop"})
    assert response.status_code == 201, response.text
    status, body = _refusal(site, terminal_url(site.server.url, stopped.agent_id), site.member.token or "",
                            site.origin)
    assert status == 409
    assert "no longer running" in body["message"]
    assert "Start the workspace" in body["detail"]


def test_an_agent_that_has_not_connected_is_a_409(site: Site) -> None:
    silent = seed_agent(site.member, site.conninfo, name=f"silent{secrets.token_hex(3)}")
    status, body = _refusal(site, terminal_url(site.server.url, silent.agent_id), site.member.token or "",
                            site.origin)
    assert status == 409
    assert "has not connected yet" in body["message"]


@pytest.mark.parametrize(("message", "code", "reason"), [
    ("not json", 1008, "not JSON"),
    (json.dumps({"data": "x", "extra": 1}), 1008, "extra"),
    (json.dumps({"height": 0, "width": 80}), 1008, "height"),
    (json.dumps({"height": 24, "width": 100_000}), 1008, "width"),
    (json.dumps([1, 2]), 1008, '{"data"'),
    (json.dumps({"data": "x" * MAX_MESSAGE_BYTES}), 1009, "larger than 65536 bytes"),
], ids=["not JSON", "an unknown key", "a zero height", "a huge width", "not an object", "over 64 KiB"])
def test_a_bad_message_closes_the_terminal_with_a_reason(site: Site, message: str, code: int, reason: str) -> None:
    async def check() -> None:
        async with as_member(site) as screen:
            await screen.ws.send_str(message)
            closed_code, why = await screen.close_reason()
            assert closed_code == code
            assert reason in why
    run(check)


def test_the_shell_exiting_closes_the_terminal_with_its_status(site: Site) -> None:
    async def check() -> None:
        async with as_member(site) as screen:
            await screen.type("exit 7\r")
            assert await screen.close_reason() == (1000, "The shell exited with status 7.")
    run(check)



def test_installed_behind_nginx_the_terminal_reaches_the_agent_through_the_relay_unit(
        fresh_db: str, site_pki: Path, tmp_path: Path) -> None:
    """nginx from the roles' templates routes the WebSocket to `appliance gateway`, which dials the relay at
    the access URL: back through nginx to `appliance relay serve`, where the agent is connected."""
    with installed_layout(fresh_db, relay=True, pki_dir=site_pki) as served:
        owner = Api(served.url)
        owner.create_first_user("owner")
        owner = owner.as_user(owner.login("owner"))
        seed_template(fresh_db)
        seeded = seed_agent(owner, fresh_db)
        scraper = owner.post("/api/v2/users/me/keys/tokens", json={"token_name": "prom", "scope": "metrics"})

        def open_websockets() -> float:
            """The gateway's gauge, as the console's scrape adds it up from the gateway's folder (docs/adr/0042)."""
            text = owner.get("/api/v2/metrics", token=scraper.json()["key"]).text
            return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                       if s.name == "coderd_api_concurrent_websockets")

        async def check() -> None:
            async with web_terminal(terminal_url(served.url, seeded.agent_id), token=owner.token or "",
                                    origin=served.url) as screen:
                await screen.type("echo installed-$((20+3))\r")
                await screen.until("installed-23")
                assert await asyncio.to_thread(open_websockets) == 1

        with agent_in_thread(StandInAgent(served.url, seeded.token, str(tmp_path))):
            run(check)
