"""`appliance server` behind a proxy: the client address comes from X-Forwarded-For only for trusted hops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from appliance.auth.throttle import ADDRESS_LIMIT
from tests.support.api import Api
from tests.support.postgres import conninfo_url, free_port, traversable_temp_dir
from tests.support.server import wait_for_health

ALICE, BOB = "198.51.100.7", "203.0.113.9"  # two clients behind the site's proxy (TEST-NET addresses)


@contextmanager
def appliance_server(conninfo: str, hops: int) -> Iterator[Api]:
    """The real `appliance server` (front, waitress, app) on an external database, trusting `hops` proxies."""
    root = traversable_temp_dir("appliance-proxy-")
    port = free_port()
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(root / "data"), "APPLIANCE_POSTGRES_URL": conninfo_url(conninfo),
           "APPLIANCE_PROXY_TRUSTED_HOPS": str(hops), "APPLIANCE_PROVISIONER_DAEMONS": "0",
           "XDG_CONFIG_HOME": str(root)}
    process = subprocess.Popen([sys.executable, "-m", "appliance", "server", "--http-address", f"127.0.0.1:{port}"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, alive=lambda: process.poll() is None)
        except AssertionError as err:
            raise AssertionError(f"{err}:\n{process.communicate(timeout=10)[0]}") from err
        yield Api(url)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _wrong_login(api: Api, n: int, forwarded_for: str) -> int:
    response = api.post("/api/v2/users/login", json={"username": f"nobody{n}", "password": "wrong-password-1"},
                        headers={"X-Forwarded-For": forwarded_for})
    return response.status_code


def _login_addresses(owner: Api) -> set[str]:
    rows = owner.get("/api/v2/audit", params={"action": "login", "limit": 1000}).json()["audit_logs"]
    return {row["ip"] for row in rows if row["username"].startswith("nobody")}


@pytest.mark.security(finding=10)
def test_behind_one_trusted_proxy_audit_and_throttle_see_the_forwarded_client(fresh_db: str) -> None:
    with appliance_server(fresh_db, hops=1) as api:
        api.create_first_user("owner")
        owner = api.as_user(api.login("owner"))
        # The proxy appends the address it saw; what a client wrote before it is not trusted.
        statuses = [_wrong_login(api, n, f"10.6.6.6, {ALICE}") for n in range(ADDRESS_LIMIT.failures)]
        assert statuses == [401] * ADDRESS_LIMIT.failures
        assert _wrong_login(api, 99, ALICE) == 429, "Alice's address has used up its failures"
        assert _wrong_login(api, 100, BOB) == 401, "Bob, behind the same proxy, is not throttled for Alice"
        assert _login_addresses(owner) == {ALICE, BOB}


@pytest.mark.security(finding=10)
def test_without_a_trusted_proxy_a_forwarded_address_is_ignored(fresh_db: str) -> None:
    with appliance_server(fresh_db, hops=0) as api:
        api.create_first_user("owner")
        owner = api.as_user(api.login("owner"))
        statuses = [_wrong_login(api, n, f"192.0.2.{n}") for n in range(ADDRESS_LIMIT.failures)]
        assert statuses == [401] * ADDRESS_LIMIT.failures
        assert _wrong_login(api, 99, BOB) == 429, "a new X-Forwarded-For does not buy a client more attempts"
        assert _login_addresses(owner) == {"127.0.0.1"}
