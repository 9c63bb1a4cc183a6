"""`appliance server --tls-address` on a fresh data dir: HTTPS that curl accepts with only the CA bundle."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.appliance_provider import provider_cache_env
from tests.support.postgres import free_port, traversable_temp_dir
from tests.support.server import wait_for_health


@pytest.fixture
def tls_server() -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    root = traversable_temp_dir("appliance-tls-")
    data_dir = root / "data"
    http_port, tls_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}, **provider_cache_env()}
    env["APPLIANCE_REGISTRY_ADDRESS"] = f"127.0.0.1:{free_port()}"  # the default port may be another test's
    process = subprocess.Popen([sys.executable, "-m", "appliance", "server", "--data-dir", str(data_dir),
                                "--http-address", f"127.0.0.1:{http_port}", "--tls-address", f"127.0.0.1:{tls_port}"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_health(f"http://127.0.0.1:{http_port}", alive=lambda: process.poll() is None)
        yield f"https://127.0.0.1:{tls_port}", data_dir / "pki" / "ca-bundle.pem", process
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_curl_with_only_the_ca_bundle_accepts_the_console(tls_server: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, bundle, _ = tls_server
    ok = subprocess.run(["curl", "-sS", "--cacert", str(bundle), f"{url}/healthz"], capture_output=True, text=True,
                        timeout=30, check=False)
    assert (ok.returncode, ok.stdout) == (0, "OK")
    page = subprocess.run(["curl", "-sS", "-L", "--cacert", str(bundle), f"{url}/"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert "Create the first user" in page.stdout
    refused = subprocess.run(["curl", "-sS", f"{url}/healthz"], capture_output=True, text=True, timeout=30,
                             check=False)
    assert refused.returncode == 60  # curl: peer certificate cannot be authenticated with known CA certificates


def test_https_serves_the_same_bundle_and_sets_secure_cookies(
        tls_server: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, bundle, _ = tls_server
    served = requests.get(f"{url}/api/v2/pki/ca.pem", verify=str(bundle), timeout=10)
    assert served.content == bundle.read_bytes()
    assert len(served.headers["X-Root-Fingerprint-SHA256"].split(":")) == 32
    assert requests.post(f"{url}/api/v2/users/first", verify=str(bundle), timeout=10, json={
        "username": "admin", "email": "admin@example.org", "password": "correct-horse-battery"}).status_code == 201
    login = requests.post(f"{url}/api/v2/users/login", verify=str(bundle), timeout=10,
                          json={"username": "admin", "password": "correct-horse-battery"})
    assert "Secure" in login.headers["Set-Cookie"]
    assert login.headers["Strict-Transport-Security"].startswith("max-age=")
    token = login.json()["session_token"]
    status = requests.get(f"{url}/api/v2/pki/status", verify=str(bundle), timeout=10,
                          headers={"Authorization": f"Bearer {token}"}).json()
    # The server's own certificate, the registry's (docs/adr/0018) and the key that signs its tokens (0017).
    assert sorted(c["name"] for c in status["certificates"]) == ["registry", "registry-token", "server"]
    assert status["root"]["passphrase_on_host"] is True  # quickstart: no APPLIANCE_PKI_PASSPHRASE given


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}, **provider_cache_env()}
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=60,
                          env={**env, "XDG_CONFIG_HOME": str(home)}, check=False)


def test_cli_login_over_https_pins_the_ca_by_fingerprint(tls_server: tuple[str, Path, subprocess.Popen[str]],
                                                         tmp_path: Path) -> None:
    url, bundle, _ = tls_server
    data_dir = bundle.parent.parent
    fingerprint = subprocess.run([sys.executable, "-m", "appliance", "pki", "--data-dir", str(data_dir),
                                  "trust-bundle"], capture_output=True, text=True, check=True,
                                 timeout=60).stderr.split(": ", 1)[1].strip()
    unverified = _cli(tmp_path, "login", url, "--username", "admin", "--first-user-email", "a@example.org",
                      "--password", "correct-horse-battery")
    assert unverified.returncode == 1 and "TLS verification failed" in unverified.stderr
    wrong = _cli(tmp_path, "login", url, "--ca-fingerprint", "00" * 32, "--username", "admin",
                 "--password", "correct-horse-battery")
    assert wrong.returncode == 1 and "not the one you gave" in wrong.stderr
    pinned = _cli(tmp_path, "login", url, "--ca-fingerprint", fingerprint, "--username", "admin",
                  "--first-user-email", "admin@example.org", "--password", "correct-horse-battery")
    assert pinned.returncode == 0, pinned.stderr
    assert (tmp_path / "appliance" / "ca.pem").read_bytes() == bundle.read_bytes()
    assert "admin" in _cli(tmp_path, "whoami").stdout  # later commands verify with the saved bundle
    by_file = _cli(tmp_path / "other", "login", url, "--ca-file", str(bundle), "--username", "admin",
                   "--password", "correct-horse-battery")
    assert by_file.returncode == 0, by_file.stderr
