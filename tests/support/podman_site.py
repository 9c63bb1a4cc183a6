"""A control plane whose workspaces are real containers: the registry holding the base image as base/debian:12,
the runtime service over real podman, an in-process daemon whose sandbox reaches it. For tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from appliance.auth.rbac import Subject
from appliance.config import Address
from appliance.pki.ca import CertificateAuthority
from appliance.pki.layout import PkiLayout
from appliance.registry.config import RegistrySettings, write_registry_config
from appliance.registry.process import RegistryProcess
from appliance.registry.scopes import PULL, PUSH, REPOSITORY, Access
from appliance.registry.tokens import issue_token, load_signer
from appliance.runtime.service import EmbeddedRuntime, RuntimeSettings
from appliance.sdk.runtime import LABEL_WORKSPACE
from tests.support.postgres import free_port
from tests.support.server import LiveServer, live_server

BASE_REPOSITORY, BASE_TAG = "base/debian", "12"
LAYOUT_REF = "debian-12"  # the ref `appliance-bundle image build` gives the base image in its OCI layout


@dataclass
class PodmanSite:
    control: LiveServer
    registry: RegistryProcess
    runtime: RuntimeSettings
    conninfo: str

    @property
    def image(self) -> str:
        return f"{self.registry.host}:{self.registry.port}/{BASE_REPOSITORY}:{BASE_TAG}"

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """podman as the runtime service runs it (its containers.conf: runc, no default ulimits)."""
        env = {**os.environ, "CONTAINERS_CONF": str(self.runtime.state_dir / "containers.conf")}
        return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=300, check=check)

    def owned(self, kind: str, workspace_id: str) -> list[str]:
        """Names of the workspace's containers or volumes that podman has."""
        label = f"label={LABEL_WORKSPACE}={workspace_id}"
        listing = ["ps", "--all"] if kind == "container" else ["volume", "ls"]
        return self.podman(*listing, "--quiet", "--filter", label).stdout.split()

    def remove_leftovers(self) -> None:
        """Whatever this site's workspaces still have in podman (after a failed test or benchmark)."""
        with psycopg.connect(self.conninfo) as conn:
            ids = [str(row[0]) for row in conn.execute("SELECT id FROM workspaces").fetchall()]
        for workspace_id in ids:
            for kind, removal in (("container", ["rm", "--force", "--time", "1"]),
                                  ("volume", ["volume", "rm", "--force"])):
                if names := self.owned(kind, workspace_id):
                    self.podman(*removal, *names, check=False)


def push_base_image(ca: CertificateAuthority, registry: RegistryProcess, layout: Path,
                    repository: str = BASE_REPOSITORY, tag: str = BASE_TAG) -> None:
    """The base image's layout into a plain-http test registry, with a push token signed for it."""
    subject = Subject.of(uuid.uuid4(), "image-pusher", ["owner"])
    token = issue_token(load_signer(ca), subject, [Access(REPOSITORY, repository, (PULL, PUSH))],
                        datetime.now(UTC)).token
    copied = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-registry-token", token,
                             f"oci:{layout}:{LAYOUT_REF}",
                             f"docker://{registry.host}:{registry.port}/{repository}:{tag}"],
                            capture_output=True, text=True, timeout=600, check=False)
    if copied.returncode != 0:
        raise RuntimeError(f"skopeo could not push the base image: {copied.stderr}")


@contextmanager
def podman_site(conninfo: str, pki_dir: Path, mirror_dir: Path, layout: Path, work: Path) -> Iterator[PodmanSite]:
    """Everything started in `work` (searchable by the sandbox uid), stopped and cleaned up at the end."""
    port, registry_port = free_port(), free_port()
    access_url = f"http://127.0.0.1:{port}"
    registry = RegistryProcess(write_registry_config(
        RegistrySettings(work / "storage", f"127.0.0.1:{registry_port}", access_url, PkiLayout(pki_dir).root_cert),
        work / "registry.yml"), work / "registry.log", "127.0.0.1", registry_port)
    runtime = RuntimeSettings(work / "run" / "runtime.sock", work / "state", access_url,
                              f"127.0.0.1:{registry_port}", PkiLayout(pki_dir).root_cert, registry_is_tls=False,
                              policy_limits={"max_cpus": 2.0, "max_memory_mb": 2048})
    service = EmbeddedRuntime(runtime)
    registry.start()
    site = None
    try:
        push_base_image(CertificateAuthority(pki_dir), registry, layout)
        service.start()
        with live_server(conninfo, port=port, pki_dir=pki_dir, mirror_dir=mirror_dir,
                         provisioner_dir=work / "provisioner", provisioner_daemons=1,
                         registry_address=Address("127.0.0.1", registry_port),
                         runtime_socket=runtime.socket) as control:
            site = PodmanSite(control, registry, runtime, conninfo)
            yield site
    finally:
        if site is not None:
            site.remove_leftovers()
            site.podman("rmi", "--force", site.image, check=False)
        service.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
