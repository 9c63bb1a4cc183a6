"""The installed layout: real nginx with the relay role's location in front of `appliance relay serve`.

Both DERP transports (`Upgrade: DERP` and the WebSocket fallback) tunnel through the proxy in both
directions, a refusal reaches the client with the relay's reason, and the probe routes answer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from appliance.relay.client import Packet, RelayRefused, connect
from appliance.relay.keys import NodeKey
from tests.support.installed import stop, write_nginx_conf
from tests.support.postgres import conninfo_url, free_port
from tests.support.relay import make_agent, vouch

pytestmark = pytest.mark.integration

RELAY_ROLE = Path(__file__).resolve().parents[4] / "playbooks" / "roles" / "relay"
MARKER = b"through-nginx-and-back"


def _render(name: str, **variables: object) -> str:
    template = jinja2.Template((RELAY_ROLE / "templates" / name).read_text(), undefined=jinja2.StrictUndefined)
    return template.render(**variables)


def _nginx_conf(run: Path, port: int, relay_socket: Path) -> Path:
    """A minimal nginx with the role's two files included where the installed site includes them."""
    variables = {"relay_socket": relay_socket, "appliance_https_port": 443, "relay_proxy_timeout": "3600s"}
    (run / "upgrade.conf").write_text(_render("relay-upgrade.conf.j2", **variables))
    (run / "relay.conf").write_text(_render("relay.conf.j2", **variables))
    return write_nginx_conf(run, port, f"    include {run}/upgrade.conf;", f"        include {run}/relay.conf;")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 -- a loopback URL we built
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def _wait_until_up(url: str, processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if _get(url) == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            pytest.fail("the relay behind nginx did not answer: " + "\n".join(log.read_text()[-2000:] for log in logs))
        time.sleep(0.2)


@pytest.fixture
def behind_nginx(fresh_db: str) -> Iterator[str]:
    """`appliance relay serve` on a unix socket as the unit runs it, and nginx in front; the base URL."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed; run dev/system-packages.sh --test")
    run = Path(tempfile.mkdtemp(prefix="relay-"))  # short: unix socket paths are limited to 107 bytes
    (run / "pki").mkdir(mode=0o700)
    port, relay_socket = free_port(), run / "relay.sock"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
           "APPLIANCE_POSTGRES_URL": conninfo_url(fresh_db), "APPLIANCE_PKI_DIR": str(run / "pki"),
           "APPLIANCE_DATA_DIR": str(run), "APPLIANCE_LOG_LEVEL": "warning"}
    logs = [run / "relay.log", run / "nginx.log"]
    processes = [subprocess.Popen([sys.executable, "-m", "appliance", "relay", "serve", "--socket", str(relay_socket)],
                                  env=env, stdout=logs[0].open("wb"), stderr=subprocess.STDOUT)]
    try:
        processes.append(subprocess.Popen(["nginx", "-p", str(run), "-c", str(_nginx_conf(run, port, relay_socket)),
                                           "-g", "daemon off;"], stdout=logs[1].open("wb"), stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{url}/derp/latency-check", processes, logs)
        yield url
    finally:
        stop(processes)
        assert (run / "pki" / "relay-node.key").stat().st_mode & 0o777 == 0o600  # kept in its own folder
        shutil.rmtree(run, ignore_errors=True)


@pytest.mark.parametrize(("agent_websocket", "client_websocket"), [(False, True), (True, False)],
                         ids=["agent over Upgrade DERP, client over WebSocket", "agent over WebSocket, client over "
                              "Upgrade DERP"])
def test_a_paired_client_and_agent_exchange_packets_through_nginx(
        behind_nginx: str, fresh_db: str, agent_websocket: bool, client_websocket: bool) -> None:
    agent = make_agent(fresh_db)
    agent_key, client_key = vouch(fresh_db, agent, "agent"), vouch(fresh_db, agent, "client")

    async def exchange() -> tuple[Packet, Packet]:
        on_agent = await connect(f"{behind_nginx}/derp", agent_key, websocket=agent_websocket)
        on_client = await connect(f"{behind_nginx}/derp", client_key, websocket=client_websocket)
        try:
            await on_client.send(agent_key.public, MARKER)
            heard = await asyncio.wait_for(on_agent.recv(), 10)
            await on_agent.send(client_key.public, MARKER[::-1])
            answered = await asyncio.wait_for(on_client.recv(), 10)
            assert isinstance(heard, Packet) and isinstance(answered, Packet), (heard, answered)
            return heard, answered
        finally:
            await on_client.close()
            await on_agent.close()

    heard, answered = asyncio.run(exchange())
    assert (heard.source, heard.data) == (client_key.public, MARKER)
    assert (answered.source, answered.data) == (agent_key.public, MARKER[::-1])


@pytest.mark.parametrize("websocket", [False, True], ids=["Upgrade DERP", "WebSocket"])
def test_an_unvouched_key_is_refused_through_nginx_with_the_relays_reason(behind_nginx: str, websocket: bool) -> None:
    async def dial() -> None:
        client = await connect(f"{behind_nginx}/derp", NodeKey.generate(), websocket=websocket)
        await asyncio.wait_for(client.recv(), 10)

    with pytest.raises(RelayRefused) as refused:
        asyncio.run(dial())
    # The handshake ran through the tunnel: the relay's own words, not an HTTP error from the proxy.
    assert "the control plane has not vouched for this key" in refused.value.reason, refused.value.reason


def test_the_probe_routes_answer_through_nginx_and_a_plain_get_of_derp_is_told_to_upgrade(behind_nginx: str) -> None:
    assert _get(f"{behind_nginx}/derp/latency-check") == 200
    assert _get(f"{behind_nginx}/derp/probe") == 200
    assert _get(f"{behind_nginx}/derp") == 426  # the relay's answer: nginx routed it, with no upgrade asked for
