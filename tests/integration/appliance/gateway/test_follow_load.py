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
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pytest

from appliance.db.database import Database
from appliance.provisioner.local import start_in_process
from tests.support.api import Api
from tests.support.followers import HealthProbe, all_log_ids, follow_concurrently, rss_kib
from tests.support.postgres import conninfo_url, free_port, traversable_temp_dir
from tests.support.server import make_config, wait_for_health
from tests.support.workspaces import TEMPLATES, push, wait_build, wait_version

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[4]
ROLES = REPO / "playbooks" / "roles"
FOLLOWERS = 100
LINES = 300
HEALTHZ_BOUND = 1.0


@dataclass
class Served:
    url: str
    gateway_pid: int
    logs: list[Path]


def _render(template: Path, **variables: object) -> str:
    rendered: str = jinja2.Template(template.read_text(), undefined=jinja2.StrictUndefined).render(**variables)
    return rendered


def _console_location(console_socket: Path) -> str:
    """The nginx role's `location /` block, rendered from its site template."""
    site = _render(ROLES / "nginx" / "templates" / "appliance.conf.j2", appliance_https_port=443,
                   appliance_http_port=80, appliance_hostname="localhost", nginx_certificate="unused",
                   nginx_certificate_key="unused", nginx_console_socket=console_socket,
                   nginx_client_max_body_size="100m")
    found = re.search(r"^    location / \{.*?^    \}", site, re.MULTILINE | re.DOTALL)
    assert found, "the nginx role's site template has no `location /` block"
    return found.group(0)


def _nginx_conf(run: Path, port: int, console_socket: Path, gateway_socket: Path) -> Path:
    variables = {"gateway_socket": gateway_socket, "gateway_console_socket": console_socket,
                 "appliance_https_port": 443}
    (run / "upstreams.conf").write_text(_render(ROLES / "gateway" / "templates" / "gateway-upstreams.conf.j2",
                                                **variables))
    (run / "gateway.conf").write_text(_render(ROLES / "gateway" / "templates" / "gateway.conf.j2", **variables))
    temp_paths = "\n".join(f"    {kind}_temp_path {run}/{kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = run / "nginx.conf"
    conf.write_text(f"""{'user root;' if os.geteuid() == 0 else ''}
worker_processes 1;
error_log {run}/nginx-error.log warn;
pid {run}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp_paths}
    include {run}/upstreams.conf;
    server {{
        listen 127.0.0.1:{port};
{_console_location(console_socket)}
        include {run}/gateway.conf;
    }}
}}
""")
    return conf


def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def installed_layout(fresh_db: str) -> Iterator[Served]:
    """nginx -> gunicorn (console role's settings) and `appliance gateway`, on unix sockets."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed; run dev/system-packages.sh --test")
    run = Path(tempfile.mkdtemp(prefix="gw-"))  # short: unix socket paths are limited to 107 bytes
    port = free_port()
    console_socket, gateway_socket = run / "console.sock", run / "gateway.sock"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
           "APPLIANCE_POSTGRES_URL": conninfo_url(fresh_db), "APPLIANCE_ACCESS_URL": f"http://127.0.0.1:{port}",
           "APPLIANCE_PROXY_TRUSTED_HOPS": "1", "APPLIANCE_LOG_LEVEL": "warning", "APPLIANCE_DATA_DIR": str(run)}
    logs = [run / "gunicorn.log", run / "gateway.log", run / "nginx.log"]
    processes = [
        # The console role's ExecStart, word for word but for the interpreter and the socket's folder.
        _spawn([sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"unix:{console_socket}",
                "--umask", "007", "appliance.wsgi:app"], logs[0], env),
        _spawn([sys.executable, "-m", "appliance", "gateway", "--socket", str(gateway_socket)], logs[1], env),
    ]
    try:
        processes.append(_spawn(["nginx", "-p", str(run), "-c", str(_nginx_conf(run, port, console_socket,
                                                                                gateway_socket)),
                                 "-g", "daemon off;"], logs[2], env))
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, alive=lambda: all(p.poll() is None for p in processes))
        yield Served(url, processes[1].pid, logs)
    finally:
        _stop(processes)
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def embedded_server(appliance_mirror: Path) -> Iterator[Served]:
    """`appliance server` on a fresh data dir: embedded PostgreSQL, in-process provisioner, one port."""
    root = traversable_temp_dir("appliance-load-")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
           "APPLIANCE_DATA_DIR": str(root / "data"), "APPLIANCE_MIRROR_DIR": str(appliance_mirror),
           "APPLIANCE_LOG_LEVEL": "warning", "XDG_CONFIG_HOME": str(root), "APPLIANCE_BASE_IMAGE_AUTO": "false"}
    log = root / "server.log"  # a file, not a pipe nobody reads while the load runs
    process = _spawn([sys.executable, "-m", "appliance", "server", "--http-address", f"127.0.0.1:{port}"], log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, timeout=120, alive=lambda: process.poll() is None)
        yield Served(url, process.pid, [log])
    finally:
        _stop([process])
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
