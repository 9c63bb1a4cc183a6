"""The installed layout on one machine without systemd: nginx (from the roles' templates) in front of
gunicorn (the console role's settings), `appliance gateway` and, optionally, `appliance relay serve`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pytest

from tests.support.postgres import conninfo_url, free_port
from tests.support.server import wait_for_health

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "playbooks" / "roles"


@dataclass
class Served:
    url: str
    gateway_pid: int
    logs: list[Path]
    run: Path  # the sockets, logs and metrics folders
    relay_pid: int | None = None  # `appliance relay serve`, when started (relay=True)


def render(template: Path, **variables: object) -> str:
    rendered: str = jinja2.Template(template.read_text(), undefined=jinja2.StrictUndefined).render(**variables)
    return rendered


def _console_location(console_socket: Path) -> str:
    """The nginx role's `location /` block, rendered from its site template."""
    site = render(ROLES / "nginx" / "templates" / "appliance.conf.j2", appliance_https_port=443,
                  appliance_http_port=80, appliance_hostname="localhost", nginx_certificate="unused",
                  nginx_certificate_key="unused", nginx_console_socket=console_socket,
                  nginx_client_max_body_size="100m", appliance_upgrade_max_bundle_mb=2048)
    found = re.search(r"^    location / \{.*?^    \}", site, re.MULTILINE | re.DOTALL)
    assert found, "the nginx role's site template has no `location /` block"
    return found.group(0)


def nginx_conf(run: Path, port: int, console_socket: Path, gateway_socket: Path,
               relay_socket: Path | None = None) -> Path:
    variables = {"gateway_socket": gateway_socket, "gateway_console_socket": console_socket,
                 "appliance_https_port": 443, "relay_socket": relay_socket, "relay_proxy_timeout": "3600s"}
    (run / "upstreams.conf").write_text(render(ROLES / "gateway" / "templates" / "gateway-upstreams.conf.j2",
                                               **variables))
    (run / "gateway.conf").write_text(render(ROLES / "gateway" / "templates" / "gateway.conf.j2", **variables))
    http_level, server_level = f"    include {run}/upstreams.conf;", f"        include {run}/gateway.conf;"
    if relay_socket is not None:
        (run / "relay-upgrade.conf").write_text(render(ROLES / "relay" / "templates" / "relay-upgrade.conf.j2"))
        (run / "relay.conf").write_text(render(ROLES / "relay" / "templates" / "relay.conf.j2", **variables))
        http_level += f"\n    include {run}/relay-upgrade.conf;"
        server_level += f"\n        include {run}/relay.conf;"
    return write_nginx_conf(run, port, http_level, f"{_console_location(console_socket)}\n{server_level}")


def write_nginx_conf(run: Path, port: int, http_level: str, server_level: str) -> Path:
    """nginx.conf for a foreground nginx whose files all live in `run`, listening on 127.0.0.1:port."""
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
{http_level}
    server {{
        listen 127.0.0.1:{port};
{server_level}
    }}
}}
""")
    return conf


def spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def installed_layout(conninfo: str, *, relay: bool = False, pki_dir: Path | None = None) -> Iterator[Served]:
    """nginx -> gunicorn (console role's settings), `appliance gateway` and (relay=True) `appliance relay
    serve`, on unix sockets; the access URL is nginx's, as installed."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed; run dev/system-packages.sh --test")
    run = Path(tempfile.mkdtemp(prefix="gw-"))  # short: unix socket paths are limited to 107 bytes
    port = free_port()
    console_socket, gateway_socket, relay_socket = run / "console.sock", run / "gateway.sock", run / "relay.sock"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
           "APPLIANCE_POSTGRES_URL": conninfo_url(conninfo), "APPLIANCE_ACCESS_URL": f"http://127.0.0.1:{port}",
           "APPLIANCE_PROXY_TRUSTED_HOPS": "1", "APPLIANCE_LOG_LEVEL": "warning", "APPLIANCE_DATA_DIR": str(run)}
    if pki_dir is not None:
        env["APPLIANCE_PKI_DIR"] = str(pki_dir)
    logs = [run / "gunicorn.log", run / "gateway.log", run / "nginx.log"]
    # The roles' metrics folders (docs/adr/0042): the console's workers', and the gateway's the console reads.
    gateway_metrics = run / "gateway-metrics"
    console_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(run / "console-metrics"),
                   "APPLIANCE_METRICS_GATEWAY_DIR": str(gateway_metrics)}
    processes = [
        # The console role's ExecStart, word for word but for the interpreter and the socket's folder.
        spawn([sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"unix:{console_socket}",
               "--umask", "007", "--config", "python:appliance.server.gunicorn_conf", "appliance.wsgi:app"],
              logs[0], console_env),
        spawn([sys.executable, "-m", "appliance", "gateway", "--socket", str(gateway_socket)], logs[1],
              {**env, "PROMETHEUS_MULTIPROC_DIR": str(gateway_metrics)}),
    ]
    if relay:
        logs.append(run / "relay.log")
        processes.append(spawn([sys.executable, "-m", "appliance", "relay", "serve", "--socket", str(relay_socket)],
                               logs[-1], env))
    try:
        conf = nginx_conf(run, port, console_socket, gateway_socket, relay_socket if relay else None)
        processes.append(spawn(["nginx", "-p", str(run), "-c", str(conf), "-g", "daemon off;"], logs[2], env))
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, alive=lambda: all(p.poll() is None for p in processes))
        yield Served(url, processes[1].pid, logs, run, processes[2].pid if relay else None)
    finally:
        stop(processes)
        shutil.rmtree(run, ignore_errors=True)
