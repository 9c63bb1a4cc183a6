"""podman-debian workspaces through the API: real terraform in its sandbox, the real runtime service and podman,
the real registry holding the base image. What a developer sees: a running container whose home survives a stop."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

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
from tests.integration.appliance.runtime.conftest import _base_image_layout
from tests.support.api import Api
from tests.support.postgres import create_database, drop_database, free_port, traversable_temp_dir
from tests.support.server import LiveServer, live_server
from tests.support.workspaces import REPO, build_logs, push, transition, wait_build, wait_version

pytestmark = pytest.mark.integration

PODMAN_DEBIAN = REPO / "examples" / "templates" / "podman-debian"
BASE_REPOSITORY, BASE_TAG = "base/debian", "12"
SMALL = {"cpus": "1", "memory_mb": "512"}


@dataclass
class Site:
    control: LiveServer
    registry: RegistryProcess
    runtime: RuntimeSettings
    conninfo: str

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(self.runtime.state_dir / "containers.conf")}
        return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=300, check=check)

    def owned(self, kind: str, workspace_id: str) -> list[str]:
        """Names of the workspace's containers or volumes that podman has."""
        label = f"label={LABEL_WORKSPACE}={workspace_id}"
        listing = (["ps", "--all"] if kind == "container" else ["volume", "ls"])
        return self.podman(*listing, "--quiet", "--filter", label).stdout.split()


def _push_base_image(ca: CertificateAuthority, registry: RegistryProcess) -> None:
    subject = Subject.of(uuid.uuid4(), "test-pusher", ["owner"])
    token = issue_token(load_signer(ca), subject, [Access(REPOSITORY, BASE_REPOSITORY, (PULL, PUSH))],
                        datetime.now(UTC)).token
    copied = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-registry-token", token,
                             f"oci:{_base_image_layout()}:debian-12",
                             f"docker://{registry.host}:{registry.port}/{BASE_REPOSITORY}:{BASE_TAG}"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert copied.returncode == 0, copied.stderr


@pytest.fixture(scope="module")
def site(admin_conninfo: str, template_db: str, site_pki: Path, appliance_mirror: Path) -> Iterator[Site]:
    if os.geteuid() != 0 or shutil.which("podman") is None:
        pytest.fail("podman workspaces need rootful podman: run as root after apt-get install podman runc")
    conninfo = create_database(admin_conninfo, "podman_workspaces", template=template_db)
    work = traversable_temp_dir("appliance-podman-")
    port, registry_port = free_port(), free_port()
    access_url = f"http://127.0.0.1:{port}"
    registry = RegistryProcess(write_registry_config(
        RegistrySettings(work / "storage", f"127.0.0.1:{registry_port}", access_url, PkiLayout(site_pki).root_cert),
        work / "registry.yml"), work / "registry.log", "127.0.0.1", registry_port)
    runtime = RuntimeSettings(work / "run" / "runtime.sock", work / "state", access_url,
                              f"127.0.0.1:{registry_port}", PkiLayout(site_pki).root_cert, registry_is_tls=False,
                              policy_limits={"max_cpus": 2.0, "max_memory_mb": 2048})
    service = EmbeddedRuntime(runtime)
    registry.start()
    try:
        _push_base_image(CertificateAuthority(site_pki), registry)
        service.start()
        with live_server(conninfo, port=port, pki_dir=site_pki, mirror_dir=appliance_mirror,
                         provisioner_dir=work / "provisioner", provisioner_daemons=1,
                         registry_address=Address("127.0.0.1", registry_port),
                         runtime_socket=runtime.socket) as control:
            yield Site(control, registry, runtime, conninfo)
    finally:
        _remove_leftovers(conninfo, runtime)
        service.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
        drop_database(admin_conninfo, "podman_workspaces")


def _remove_leftovers(conninfo: str, runtime: RuntimeSettings) -> None:
    """Whatever a failed test left in podman for this module's workspaces."""
    with psycopg.connect(conninfo) as conn:
        ids = [str(row[0]) for row in conn.execute("SELECT id FROM workspaces").fetchall()]
    env = {**os.environ, "CONTAINERS_CONF": str(runtime.state_dir / "containers.conf")}
    for workspace_id in ids:
        label = f"label={LABEL_WORKSPACE}={workspace_id}"
        for listing, removal in ((["ps", "--all"], ["rm", "--force", "--time", "1"]),
                                 (["volume", "ls"], ["volume", "rm", "--force"])):
            names = subprocess.run(["podman", *listing, "--quiet", "--filter", label], capture_output=True,
                                   text=True, env=env, timeout=120, check=False).stdout.split()
            if names:
                subprocess.run(["podman", *removal, *names], capture_output=True, env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def owner(site: Site) -> Api:
    api = Api(site.control.url)
    api.create_first_user("owner")
    owner = api.as_user(api.login("owner"))
    version = wait_version(owner, "podman-debian", push(owner, PODMAN_DEBIAN, "podman-debian")["id"])
    assert version["job"]["status"] == "succeeded", version["job"]["error"]
    return owner


def _create(owner: Api, template: str, name: str) -> tuple[str, dict]:
    created = owner.post("/api/v2/workspaces", json={"template": template, "name": name, "parameters": SMALL})
    assert created.status_code == 201, created.text
    return created.json()["id"], wait_build(owner, created.json()["latest_build"]["id"], timeout=600)


def _variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(PODMAN_DEBIAN, folder)
    text = (folder / "main.tf").read_text()
    assert old in text
    (folder / "main.tf").write_text(text.replace(old, new, 1))
    return folder


def test_a_workspace_runs_a_container_whose_home_survives_stop_and_start_and_delete_removes_both(
        site: Site, owner: Api) -> None:
    workspace_id, build = _create(owner, "podman-debian", "dev")
    assert build["status"] == "running", build["job"]["error"] + build_logs(owner, build["id"])
    [container] = site.owned("container", workspace_id)
    [volume] = site.owned("volume", workspace_id)
    assert site.podman("inspect", "--format", "{{.State.Status}}", container).stdout.strip() == "running"
    # The init script is the entrypoint: it wrote the CA bundle it carries where the user dev can.
    bundle = CertificateAuthority(site.control.config.pki_dir).trust_bundle_pem().decode()
    shown = site.podman("exec", container, "cat", "/tmp/appliance-ca.pem").stdout  # noqa: S108 -- inside the container
    assert shown.strip() == bundle.strip()
    site.podman("exec", "--user", "dev", container, "sh", "-c", "echo kept > /home/dev/note")

    stopped = transition(owner, workspace_id, "stop")
    assert stopped["status"] == "stopped", stopped["job"]["error"]
    assert site.owned("container", workspace_id) == [] and site.owned("volume", workspace_id) == [volume]

    started = transition(owner, workspace_id, "start")
    assert started["status"] == "running", started["job"]["error"]
    [again] = site.owned("container", workspace_id)
    assert site.podman("exec", again, "cat", "/home/dev/note").stdout.strip() == "kept"

    deleted = transition(owner, workspace_id, "delete")
    assert deleted["status"] == "deleted", deleted["job"]["error"]
    assert site.owned("container", workspace_id) == [] and site.owned("volume", workspace_id) == []


def test_an_image_from_another_registry_is_refused_at_import_naming_the_resource_and_the_image(
        owner: Api, tmp_path: Path) -> None:
    folder = _variant(tmp_path, "elsewhere", '"${data.appliance_workspace.me.registry}/base/debian:12"',
                      '"docker.io/library/debian:12"')
    version = wait_version(owner, "elsewhere", push(owner, folder, "elsewhere")["id"])
    error = version["job"]["error"]
    assert version["job"]["status"] == "failed"
    assert "appliance_podman_container" in error and '"workspace"' in error, error
    assert "docker.io/library/debian:12" in error and "internal registry" in error, error


def test_a_privileged_container_fails_the_build_naming_the_rule(site: Site, owner: Api, tmp_path: Path) -> None:
    folder = _variant(tmp_path, "privileged", '  user     = "dev"\n', '  user     = "dev"\n  privileged = true\n')
    version = wait_version(owner, "privileged", push(owner, folder, "privileged")["id"])
    assert version["job"]["status"] == "succeeded", version["job"]["error"]
    workspace_id, build = _create(owner, "privileged", "escalate")
    assert build["status"] == "failed"
    assert "no-privileged" in build["job"]["error"] and "appliance_podman_container" in build["job"]["error"], (
        build["job"]["error"])
    assert site.owned("container", workspace_id) == []
    transition(owner, workspace_id, "delete")


def _url(conninfo: str) -> str:
    """A key=value conninfo as the postgresql:// URL the config accepts."""
    parts = conninfo_to_dict(conninfo)
    query = urlencode({"host": parts["host"], "port": parts["port"]})
    return f"postgresql://{quote(str(parts['user']))}:{quote(str(parts['password']))}@/{parts['dbname']}?{query}"


def _doctor(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
           "APPLIANCE_POSTGRES_URL": _url(site.conninfo), "APPLIANCE_RUNTIME_SOCKET": str(site.runtime.socket)}
    return subprocess.run([sys.executable, "-m", "appliance", "doctor", "--output", "json", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_doctor_lists_what_no_live_workspace_owns_and_fix_removes_only_that(site: Site, owner: Api) -> None:
    workspace_id, build = _create(owner, "podman-debian", "kept")
    assert build["status"] == "running", build["job"]["error"]
    gone, stray = str(uuid.uuid4()), f"stray-{uuid.uuid4().hex[:8]}"
    site.podman("volume", "create", "--label", f"{LABEL_WORKSPACE}={gone}", f"ws-{gone}-home")
    site.podman("volume", "create", "--label", f"{LABEL_WORKSPACE}={stray}", f"ws-{stray}-home")

    listed = _doctor(site)
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)}
    assert names >= {f"ws-{gone}-home", f"ws-{stray}-home"}, listed.stdout
    assert not any(re.search(workspace_id, row["workspace_id"]) for row in json.loads(listed.stdout))
    assert site.owned("volume", gone) == [f"ws-{gone}-home"], "listing alone removed something"

    fixed = _doctor(site, "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert {row["status"] for row in json.loads(fixed.stdout)} == {"removed"}, fixed.stdout
    assert site.owned("volume", gone) == [] and site.owned("volume", stray) == []
    assert len(site.owned("container", workspace_id)) == 1 and len(site.owned("volume", workspace_id)) == 1
    assert transition(owner, workspace_id, "delete")["status"] == "deleted"
