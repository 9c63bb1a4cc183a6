"""`appliance registry gc`: pushes are refused while it runs, and a deleted image's blobs are gone after.

The registry runs as `appliance server` runs it (a watched child with a pid file), so gc's switch to
read-only and back goes through the same restart the embedded server sees.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from appliance.config import Address, ServerConfig
from appliance.pki.ca import CertificateAuthority
from appliance.registry import gc, site
from appliance.registry.config import is_read_only
from appliance.registry.scopes import REPOSITORY, Access
from appliance.registry.tokens import load_signer, sign_token
from tests.support.images import cli_env, tls_registry
from tests.support.postgres import free_port
from tests.support.server import make_config
from tests.support.waiting import wait_until

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Registry:
    config: ServerConfig
    ca: CertificateAuthority

    @property
    def url(self) -> str:
        return f"https://{self.config.registry_address}"

    @property
    def verify(self) -> str:
        return str(self.ca.layout.root_cert)

    def headers(self, repo: str) -> dict[str, str]:
        token = sign_token(load_signer(self.ca), "gc-test", [Access(REPOSITORY, repo, ("pull", "push", "delete"))],
                           datetime.now(UTC)).token
        return {"Authorization": f"Bearer {token}"}

    def push_blob(self, repo: str, data: bytes) -> requests.Response:
        started = requests.post(f"{self.url}/v2/{repo}/blobs/uploads/", headers=self.headers(repo), timeout=10,
                                verify=self.verify)
        if started.status_code != 202:
            return started
        return requests.put(started.headers["Location"], params={"digest": _digest(data)}, data=data, timeout=10,
                            headers={**self.headers(repo), "Content-Type": "application/octet-stream"},
                            verify=self.verify)

    def push_image(self, repo: str, layer: bytes) -> tuple[str, str]:
        """A one-layer image tagged 1; returns (manifest digest, layer digest)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo}).encode()
        for blob in (config, layer):
            assert self.push_blob(repo, blob).status_code == 201
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(layer),
                        "size": len(layer)}]}).encode()
        put = requests.put(f"{self.url}/v2/{repo}/manifests/1", data=manifest, timeout=10, verify=self.verify,
                           headers={**self.headers(repo), "Content-Type": OCI_MANIFEST})
        assert put.status_code == 201, put.text
        return _digest(manifest), _digest(layer)

    def blob_status(self, repo: str, digest: str) -> int:
        return requests.head(f"{self.url}/v2/{repo}/blobs/{digest}", headers=self.headers(repo), timeout=10,
                             verify=self.verify).status_code


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def registry(site_pki: Path, tmp_path: Path) -> Iterator[Registry]:
    config = make_config(pki_dir=site_pki, data_dir=tmp_path, registry_dir=tmp_path / "registry",
                         registry_address=Address("127.0.0.1", free_port()), registry_embedded=True)
    with tls_registry(config) as process:
        process.watch()  # as `appliance server` does: restarts it after gc's SIGTERM
        yield Registry(config, CertificateAuthority(site_pki))


def test_a_push_during_gc_is_refused_while_pulls_go_on(registry: Registry) -> None:
    _, layer = registry.push_image("team/keep", b"kept layer" * 1000)
    config = registry.config
    switch = gc.EmbeddedSwitch(site.pid_file(config), config.registry_address.host, config.registry_address.port)
    with gc.read_only(site.config_file(config), switch) as switched:
        assert switched
        refused = registry.push_blob("team/keep", b"pushed during gc")
        assert refused.status_code == 405, refused.text
        assert registry.blob_status("team/keep", layer) == 200
    assert not is_read_only(site.config_file(config))
    assert registry.push_blob("team/keep", b"pushed after gc").status_code == 201


def test_gc_removes_the_blobs_of_a_deleted_image_and_keeps_the_rest(registry: Registry) -> None:
    _, kept = registry.push_image("team/keep", b"kept layer" * 1000)
    manifest, dropped = registry.push_image("team/drop", b"dropped layer" * 100_000)
    deleted = requests.delete(f"{registry.url}/v2/team/drop/manifests/{manifest}", timeout=10,
                              headers=registry.headers("team/drop"), verify=registry.verify)
    assert deleted.status_code == 202, deleted.text
    assert registry.blob_status("team/drop", dropped) == 200  # deleting a manifest frees nothing by itself

    result = subprocess.run([sys.executable, "-m", "appliance", "registry", "gc", "--yes", "--output", "json"],
                            capture_output=True, text=True, timeout=300, check=False, env=cli_env(registry.config))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["blobs_deleted"] >= 2 and report["bytes_freed"] >= 1_300_000
    assert registry.blob_status("team/drop", dropped) == 404
    assert registry.blob_status("team/keep", kept) == 200
    assert registry.push_blob("team/keep", b"writable again").status_code == 201


def test_write_config_gives_the_installed_unit_the_cas_paths_and_says_which_certificate_to_issue(
        tmp_path: Path) -> None:
    """What the installer's `registry` role runs, before the registry certificate exists."""
    env = {**cli_env(make_config(pki_dir=tmp_path / "pki", registry_dir=tmp_path / "registry",
                                 registry_address=Address("127.0.0.1", 3002))),
           "APPLIANCE_REGISTRY_EMBEDDED": "false"}
    output = tmp_path / "etc" / "registry.yml"
    result = subprocess.run([sys.executable, "-m", "appliance", "registry", "write-config", "--output", str(output)],
                            capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    written = json.loads(output.read_text())
    assert written["http"]["tls"] == {"certificate": str(tmp_path / "pki" / "live" / "registry" / "fullchain.pem"),
                                      "key": str(tmp_path / "pki" / "live" / "registry" / "key.pem")}
    assert written["auth"]["token"]["rootcertbundle"] == str(tmp_path / "pki" / "root" / "ca.crt.pem")
    assert written["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "registry" / "storage")
    assert output.stat().st_mode & 0o077 == 0
    assert "appliance pki issue registry --dns localhost --ip 127.0.0.1" in result.stderr


def test_a_registry_that_cannot_start_at_once_is_started_again(registry: Registry) -> None:
    """The watcher tries a failed start again, later, instead of leaving the site without a registry."""
    pid_file = site.pid_file(registry.config)
    pid = pid_file.read_text().strip()
    address = registry.config.registry_address
    os.kill(int(pid), signal.SIGKILL)
    # Listen on the port as soon as the killed registry lets it go: the watcher's first start, 1 s after
    # the exit, finds it taken.
    with wait_until(lambda: _listener(address.host, address.port), "the killed registry's port", timeout=5,
                    interval=0.01):
        time.sleep(2)
    wait_until(lambda: pid_file.read_text().strip() != pid, "the registry to be started again")
    wait_until(lambda: _accepts_push(registry), "a push to the restarted registry")


def _listener(host: str, port: int) -> socket.socket | None:
    try:
        return socket.create_server((host, port))
    except OSError:
        return None


def _accepts_push(registry: Registry) -> bool:
    try:
        return registry.push_blob("team/keep", b"after the retry").status_code == 201
    except requests.ConnectionError:
        return False
