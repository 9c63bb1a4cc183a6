"""A real runtime service on a temp socket: real podman, the real registry holding the base image, a live control plane.

The base image is built once (cached under .cache/) unless APPLIANCE_TEST_BASE_IMAGE names a built OCI
layout. Every container, volume and image the tests make carries a workspace id of this run and is
removed at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.pki.ca import CertificateAuthority
from appliance.pki.layout import PkiLayout
from appliance.registry.config import RegistrySettings, write_registry_config
from appliance.registry.process import RegistryProcess
from appliance.registry.tokens import load_signer
from appliance.runtime.credentials import BuildCredential, issue
from appliance.runtime.service import EmbeddedRuntime, RuntimeSettings
from appliance.sdk.runtime import LABEL_WORKSPACE
from tests.support.images import base_image
from tests.support.podman_site import push_base_image
from tests.support.postgres import create_database, drop_database, free_port
from tests.support.server import LiveServer, live_server

REPO = Path(__file__).resolve().parents[4]
REPOSITORY_NAME = "appliance/base"
TAG = "debian-12"


class RuntimeClient:
    """HTTP over the service's unix socket, as the provider speaks it."""

    def __init__(self, socket_path: Path, token: str | None) -> None:
        self.socket_path, self.token = socket_path, token

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        connection = _UnixConnection(str(self.socket_path))
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return response.status, (json.loads(data) if data else None)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=900)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self._path)
        self.sock = sock


@dataclass
class RuntimeSite:
    control: LiveServer
    registry: RegistryProcess
    settings: RuntimeSettings
    ca: CertificateAuthority
    workspaces: list[str] = field(default_factory=list)

    @property
    def image(self) -> str:
        return f"{self.registry.host}:{self.registry.port}/{REPOSITORY_NAME}:{TAG}"

    def client(self, workspace_id: str | None = None, *, token: str | None = None) -> RuntimeClient:
        if token is None:
            token = self.credential(workspace_id or self.new_workspace())
        return RuntimeClient(self.settings.socket, token)

    def new_workspace(self) -> str:
        workspace_id = str(uuid.uuid4())
        self.workspaces.append(workspace_id)
        return workspace_id

    def credential(self, workspace_id: str, lifetime: timedelta = timedelta(minutes=30)) -> str:
        signer = load_signer(self.ca)
        build = BuildCredential(workspace_id, str(uuid.uuid4()), str(uuid.uuid4()))
        return issue(signer.key, signer.chain, build, datetime.now(UTC), lifetime)

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(self.settings.state_dir / "containers.conf")}
        return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=300, check=check)


@pytest.fixture(scope="module")
def runtime_site(admin_conninfo: str, template_db: str, site_pki: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeSite]:
    if os.geteuid() != 0 or shutil.which("podman") is None:
        pytest.fail("the runtime service drives rootful podman: run as root after apt-get install podman runc")
    conninfo = create_database(admin_conninfo, "runtime_service", template=template_db)
    work = tmp_path_factory.mktemp("runtime")
    port = free_port()
    ca = CertificateAuthority(site_pki)
    with live_server(conninfo, pki_dir=site_pki) as control:
        registry_settings = RegistrySettings(work / "storage", f"127.0.0.1:{port}", control.config.access_url,
                                             PkiLayout(site_pki).root_cert)
        registry = RegistryProcess(write_registry_config(registry_settings, work / "registry.yml"),
                                   work / "registry.log", "127.0.0.1", port)
        registry.start()
        settings = RuntimeSettings(work / "run" / "runtime.sock", work / "state", control.config.access_url,
                                   f"127.0.0.1:{port}", PkiLayout(site_pki).root_cert, registry_is_tls=False,
                                   policy_limits={"max_cpus": 2.0, "max_memory_mb": 2048})
        service = EmbeddedRuntime(settings)
        site = RuntimeSite(control, registry, settings, ca)
        try:
            push_base_image(ca, registry, base_image(), REPOSITORY_NAME, TAG)
            service.start()
            yield site
        finally:
            service.stop()
            _clean_up(site)
            registry.stop()
    drop_database(admin_conninfo, "runtime_service")


def _clean_up(site: RuntimeSite) -> None:
    for workspace_id in site.workspaces:
        label = f"label={LABEL_WORKSPACE}={workspace_id}"
        names = site.podman("ps", "--all", "--quiet", "--filter", label, check=False).stdout.split()
        if names:
            site.podman("rm", "--force", "--time", "1", *names, check=False)
        volumes = site.podman("volume", "ls", "--quiet", "--filter", label, check=False).stdout.split()
        if volumes:
            site.podman("volume", "rm", "--force", *volumes, check=False)
    # By name and never --force: another test's (or engineer's) container may use the same image id.
    site.podman("rmi", site.image, check=False)

