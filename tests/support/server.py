"""The real server on a free loopback port: the embedded front (gateway + waitress), in background threads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from appliance.app import create_app
from appliance.config import Address, ServerConfig
from appliance.db.database import Database
from appliance.gateway.front import EmbeddedFront
from appliance.provisioner.local import start_in_process
from appliance.server.runtime import bind
from tests.support.conformance import check_responses
from tests.support.postgres import free_port


def make_config(**overrides: Any) -> ServerConfig:
    port = overrides.pop("port", 0)
    values: dict[str, Any] = {
        "http_address": Address("127.0.0.1", port),
        "access_url": f"http://127.0.0.1:{port}",
        "postgres_url": None,
        "data_dir": Path("/nonexistent"),
        "log_format": "text",
        "log_level": "warning",
        "proxy_trusted_hops": 0,
        "session_lifetime": timedelta(hours=24),
        "max_token_lifetime": timedelta(days=365),
        "tls_address": None,
        "pki_dir": Path("/nonexistent/pki"),
        "mirror_dir": Path("/nonexistent/mirror"),
        "cert_renew_within": timedelta(days=30),
        "first_user_requires_setup_token": False,
        "provisioner_daemons": 0,
        "provisioner_psk": "",
        "provisioner_job_timeout": timedelta(minutes=10),
        "provisioner_heartbeat_timeout": timedelta(seconds=60),
        "provisioner_dir": Path("/nonexistent/provisioner"),
        "provider_cache_dir": Path("/nonexistent/provider-cache"),
        "registry_address": Address("127.0.0.1", 0),
        "registry_dir": Path("/nonexistent/registry"),
        "registry_embedded": False,
        "runtime_socket": Path("/nonexistent/runtime.sock"),
        "runtime_embedded": False,
        "runtime_forwarder": True,
        "base_image_auto": False,
        "agent_binary_dir": Path("/nonexistent/agent"),
        "relay_rate_bytes_per_second": 0,
        "relay_rate_burst_bytes": 0,
        "relay_accept_per_second": 200.0,
        "relay_accept_burst": 1000,
        "config_file": None,
    }
    values.update(overrides)
    return ServerConfig(**values)


@dataclass
class LiveServer:
    url: str
    db: Database
    config: ServerConfig


@contextmanager
def live_server(conninfo: str, *, port: int | None = None, **config: Any) -> Iterator[LiveServer]:
    """The app on a free port (or `port`, to restart it where daemons expect it); with provisioner_daemons=N
    (and a mirror_dir) it runs N in-process daemons."""
    port = port or free_port()
    cfg = make_config(port=port, postgres_url=conninfo, **config)
    db = Database(conninfo)
    # The same shape as `appliance server`: log follows on the gateway, the rest through waitress.
    app = create_app(cfg, db, behind_front=True)
    check_responses(app)
    front = EmbeddedFront(cfg, db, app, bind(cfg.http_address))
    front.start()
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url)
    provisioners = start_in_process(cfg, db)
    try:
        yield LiveServer(url, db, cfg)
    finally:
        provisioners.stop(timeout=30)
        front.stop()
        db.close()


def wait_for_health(url: str, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until url/healthz answers OK; fail early if `alive` says the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"the server behind {url} exited before it became healthy")
        try:
            if requests.get(url + "/healthz", timeout=2).text == "OK":
                return
        except requests.RequestException:  # a listener bound early answers once the database is up
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url}/healthz did not answer OK within {timeout}s")
