"""Workspace apps by path, through the real gateway, relay and (stand-in) agent, to real servers in the "workspace".

The stand-in agent runs on this host, so the workspace's loopback is the host's: the app servers
below listen on 127.0.0.1. The agent reaches the relay through a tap, which records what the relay
exchanges with it: an app's bytes must cross it encrypted.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import psycopg
import pytest
from aiohttp import web

from appliance.relay.dial import ECHO, open_session
from appliance.relay.stats import close_orphans
from appliance.sdk.client import Client
from tests.support.agents import SeededAgent, seed_agent, seed_template
from tests.support.api import Api
from tests.support.postgres import create_database, drop_database, free_port
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer, live_server
from tests.support.tap import Tap, tapped

pytestmark = pytest.mark.integration

BIG = os.urandom(20 << 20)
MARKER = "APPMARKER-" + os.urandom(8).hex()


def _app_server() -> web.Application:
    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BIG, content_type="application/octet-stream")

    async def upload(request: web.Request) -> web.StreamResponse:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"sha256": digest.hexdigest(), "size": size, "path": request.path})

    async def headers(request: web.Request) -> web.StreamResponse:
        return web.json_response({"headers": dict(request.headers), "path": request.path_qs})

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/landing?from=app")

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/big", big)
    app.router.add_post("/upload", upload)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/ws", echo)
    app.router.add_route("*", "/{tail:.*}", headers)
    return app


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    """The app inside the "workspace": an aiohttp server on loopback, on its own thread."""
    loop = asyncio.new_event_loop()
    port = free_port()
    runner = web.AppRunner(_app_server())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def apps_db(admin_conninfo: str, template_db: str) -> Iterator[str]:
    yield create_database(admin_conninfo, "gateway_apps", template=template_db)
    drop_database(admin_conninfo, "gateway_apps")


@pytest.fixture(scope="module")
def server(apps_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    pki: Path = tmp_path_factory.mktemp("apps") / "pki"
    pki.mkdir()
    with live_server(apps_db, pki_dir=pki) as live:
        yield live


@pytest.fixture(scope="module")
def users(server: LiveServer) -> dict[str, Api]:
    """site: the first user (site owner); dev: owns the workspace; other: another member."""
    anonymous = Api(server.url)
    anonymous.create_first_user("site")
    site = anonymous.as_user(anonymous.login("site"))
    for name in ("dev", "other"):
        site.create_user(username=name)
    return {"site": site, "dev": site.as_user(site.login("dev")), "other": site.as_user(site.login("other"))}


@pytest.fixture(scope="module")
def idle_port() -> int:
    return free_port()  # nothing listens there


@pytest.fixture(scope="module")
def seeded(users: dict[str, Api], apps_db: str, app_port: int, idle_port: int) -> SeededAgent:
    seed_template(apps_db)
    return seed_agent(users["dev"], apps_db, name="ws", apps=[
        {"slug": "web", "url": f"http://localhost:{app_port}"},
        {"slug": "shared", "url": f"http://127.0.0.1:{app_port}/", "share": "authenticated"},
        {"slug": "idle", "url": f"http://localhost:{idle_port}"}])


@pytest.fixture(scope="module")
def tap(server: LiveServer, seeded: SeededAgent, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tap]:
    port = int(server.url.rsplit(":", 1)[1])
    home = str(tmp_path_factory.mktemp("home"))
    with tapped("127.0.0.1", port) as tap, agent_in_thread(StandInAgent(tap.url, seeded.token, home)):
        yield tap


def test_a_large_body_streams_through_the_app_path_unchanged(server: LiveServer, users: dict[str, Api],
                                                             tap: Tap) -> None:
    response = users["dev"].get("/@dev/ws.main/apps/web/big", stream=True)
    assert response.status_code == 200, response.text
    digest = hashlib.sha256()
    for chunk in response.iter_content(1 << 16):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(BIG).hexdigest()


def test_a_post_body_arrives_and_the_relay_sees_no_plaintext(server: LiveServer, users: dict[str, Api],
                                                             tap: Tap) -> None:
    body = (MARKER.encode() + b"\n") * 100_000
    response = users["dev"].post("/@dev/ws/apps/web/upload?x=1", data=body)  # one agent: the name may be left out
    assert response.status_code == 200, response.text
    assert response.json() == {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "path": "/upload"}
    echoed = users["dev"].get(f"/@dev/ws.main/apps/web/{MARKER}")
    assert echoed.json()["path"] == f"/{MARKER}"
    seen = bytes(tap.to_server) + bytes(tap.to_clients)
    assert len(seen) > len(body)  # the upload crossed the relay
    assert MARKER.encode() not in seen


def test_the_app_sees_its_own_paths_and_never_the_console_credentials(server: LiveServer, users: dict[str, Api],
                                                                      tap: Tap) -> None:
    dev = users["dev"]
    token = dev.token
    response = Api(server.url).get("/@dev/ws.main/apps/web/some/where?q=1", headers={
        "Cookie": f"theme=dark; appliance_session_token={token}", "Accept": "application/json"})
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/some/where?q=1"
    assert seen["headers"]["X-Forwarded-Prefix"] == "/@dev/ws.main/apps/web"
    assert seen["headers"]["Cookie"] == "theme=dark"
    assert "Authorization" not in dev.get("/@dev/ws.main/apps/web/h").json()["headers"]
    assert token not in str(seen)
    moved = dev.get("/@dev/ws.main/apps/web/redirect", allow_redirects=False)
    assert moved.status_code == 302
    assert moved.headers["Location"] == "/@dev/ws.main/apps/web/landing?from=app"
    slashless = dev.get("/@dev/ws.main/apps/web", allow_redirects=False)
    assert slashless.headers["Location"] == "/@dev/ws.main/apps/web/"


def test_a_websocket_echoes_through_the_app_path(server: LiveServer, users: dict[str, Api], tap: Tap) -> None:
    async def talk() -> None:
        headers = {"Authorization": f"Bearer {users['dev'].token}"}
        async with aiohttp.ClientSession() as client, \
                client.ws_connect(server.url + "/@dev/ws.main/apps/web/ws", headers=headers) as ws:
            await ws.send_str(MARKER)
            assert (await ws.receive()).data == MARKER
            await ws.send_bytes(b"\x00binary" * 1000)
            assert (await ws.receive()).data == b"\x00binary" * 1000

    asyncio.run(talk())
    assert MARKER.encode() not in bytes(tap.to_server) + bytes(tap.to_clients)


def test_another_user_gets_404_unless_the_app_is_shared(server: LiveServer, users: dict[str, Api], tap: Tap) -> None:
    other = users["other"]
    hidden = other.get("/@dev/ws.main/apps/web/")
    assert hidden.status_code == 404
    missing = other.get("/@dev/ws.main/apps/nosuch/").json()
    assert hidden.json() == {**missing, "message": missing["message"].replace("'nosuch'", "'web'")}  # alike
    shared = other.get("/@dev/ws.main/apps/shared/hello")
    assert shared.status_code == 200, shared.text
    assert shared.json()["path"] == "/hello"
    assert "sandbox" in shared.headers["Content-Security-Policy"]  # another's app cannot use the viewer's session
    site = users["site"].get("/@dev/ws.main/apps/web/")
    assert site.status_code == 200  # site owners may connect to any workspace
    assert "Content-Security-Policy" not in users["dev"].get("/@dev/ws.main/apps/web/").headers


def test_a_browser_without_a_session_is_sent_to_log_in(server: LiveServer, tap: Tap) -> None:
    response = Api(server.url).get("/@dev/ws.main/apps/web/x?a=1&b=2", headers={"Accept": "text/html"},
                                   allow_redirects=False)
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert (location.path, parse_qs(location.query)) == ("/login", {"next": ["/@dev/ws.main/apps/web/x?a=1&b=2"]})


def test_a_port_nothing_listens_on_is_a_502_naming_it(server: LiveServer, users: dict[str, Api], idle_port: int,
                                                      tap: Tap) -> None:
    response = users["dev"].get("/@dev/ws.main/apps/idle/", headers={"Accept": "text/html"})
    assert response.status_code == 502
    assert f"Nothing listens on port {idle_port} inside the workspace" in response.text
    assert response.headers["Content-Type"].startswith("text/html")
    # The session is still good for the app that does listen.
    assert users["dev"].get("/@dev/ws.main/apps/web/after").json()["path"] == "/after"


def test_a_session_is_recorded_with_its_end_and_bytes_each_way(server: LiveServer, users: dict[str, Api],
                                                               seeded: SeededAgent, tap: Tap) -> None:
    size = 1 << 20

    async def session() -> None:
        async with open_session(Client(server.url, users["dev"].token), seeded.agent_id, kind="ssh") as opened:
            echo = await opened.ssh.create_process(subsystem=ECHO, encoding=None)
            echo.stdin.write(os.urandom(size))
            await echo.stdout.readexactly(size)
            echo.stdin.write_eof()

    asyncio.run(session())
    path = f"/api/v2/workspaces/{seeded.workspace_id}/connections"
    deadline = time.monotonic() + 20
    while True:  # the relay writes the end off its packet path, a moment after the session closed
        ssh = [c for c in users["dev"].get(path).json()["connections"] if c["kind"] == "ssh"]
        if (ssh and ssh[0]["state"] == "ended") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    row = ssh[0]
    assert row["state"] == "ended", row
    assert row["username"] == "dev" and row["agent_name"] == "main" and row["client_ip"] == "127.0.0.1"
    assert row["connected_at"] and row["ended_at"] >= row["connected_at"]
    assert row["bytes_to_agent"] >= size and row["bytes_from_agent"] >= size
    assert any(c["kind"] == "app" for c in users["dev"].get(path).json()["connections"])

    audit = users["site"].get("/api/v2/audit", params={"action": "disconnect"}).json()["audit_logs"]
    ended = next(a for a in audit if a["diff"]["kind"]["old"] == "ssh")
    assert ended["resource_target"] == "dev/ws" and ended["username"] == "dev"
    assert int(ended["diff"]["bytes_to_agent"]["new"]) == row["bytes_to_agent"]

    page = users["dev"].get(f"/workspaces/{seeded.workspace_id}")
    assert f'data-connection="{row["id"]}" data-state="ended"' in page.text
    assert users["other"].get(path).status_code == 404


def test_a_stopped_workspace_or_an_agent_not_connected_says_what_to_do(
        server: LiveServer, users: dict[str, Api], apps_db: str, app_port: int, tap: Tap) -> None:
    dev, app = users["dev"], [{"slug": "web", "url": f"http://localhost:{app_port}"}]
    halted = seed_agent(dev, apps_db, name="halted", apps=app)
    assert dev.post(f"/api/v2/workspaces/{halted.workspace_id}/builds", json={"transition": "stop"}).status_code == 201
    stopped = dev.get("/@dev/halted/apps/web/", headers={"Accept": "text/html"})
    assert stopped.status_code == 409
    assert "Workspace dev/halted is not running" in stopped.text and "Start the workspace" in stopped.text
    seed_agent(dev, apps_db, name="fresh", apps=app)  # built, but its agent never connected
    waiting = dev.get("/@dev/fresh.main/apps/web/")
    assert waiting.status_code == 409
    assert "has not connected yet" in waiting.json()["message"]


def test_a_relay_that_starts_closes_what_its_crash_left_open(server: LiveServer, users: dict[str, Api],
                                                             seeded: SeededAgent, apps_db: str) -> None:
    with psycopg.connect(apps_db, autocommit=True) as conn:
        conn.execute("INSERT INTO workspace_connections (workspace_id, agent_id, agent_name, user_id, username, kind,"
                     " node_key, connected_at, relay_name) SELECT %s, %s, 'main', id, username, 'terminal', %s,"
                     " now() - interval '1 hour', 'crashed-relay' FROM users WHERE username = 'dev'",
                     (seeded.workspace_id, seeded.agent_id, os.urandom(32)))
    asyncio.run(close_orphans(server.db, "crashed-relay"))  # what the relay does first when it starts
    rows = users["dev"].get(f"/api/v2/workspaces/{seeded.workspace_id}/connections").json()["connections"]
    row = next(r for r in rows if r["kind"] == "terminal")
    assert row["state"] == "unknown end" and row["ended_at"] and row["bytes_to_agent"] is None
    page = users["dev"].get(f"/workspaces/{seeded.workspace_id}").text
    assert "unknown end" in page
    audit = users["site"].get("/api/v2/audit", params={"action": "disconnect"}).json()["audit_logs"]
    assert any(a["diff"]["kind"]["old"] == "terminal" and a["diff"]["bytes_to_agent"]["new"] == "unknown"
               for a in audit)


def test_a_pooled_session_that_died_is_replaced(server: LiveServer, users: dict[str, Api], tap: Tap) -> None:
    site = users["site"]
    first = site.as_user(site.login("site"))
    assert first.get("/@dev/ws.main/apps/web/one").status_code == 200  # pooled: paired with this login's key
    assert first.post("/api/v2/users/logout").status_code in (200, 204)  # the relay drops what that key paired
    second = site.as_user(site.login("site"))
    for _ in range(3):  # whether the relay closed it yet or not, no request fails
        response = second.get("/@dev/ws.main/apps/web/two")
        assert response.status_code == 200, response.text
        assert response.json()["path"] == "/two"
