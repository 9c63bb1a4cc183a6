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
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from psycopg.conninfo import conninfo_to_dict

from appliance.pki.ca import CertificateAuthority
from appliance.sdk.runtime import LABEL_WORKSPACE
from tests.support.api import Api
from tests.support.images import base_image
from tests.support.podman_site import PodmanSite, podman_site
from tests.support.postgres import create_database, drop_database, traversable_temp_dir
from tests.support.workspaces import REPO, build_logs, push, transition, wait_build, wait_version

pytestmark = pytest.mark.integration

PODMAN_DEBIAN = REPO / "examples" / "templates" / "podman-debian"
SMALL = {"cpus": "1", "memory_mb": "512"}


@pytest.fixture(scope="module")
def site(admin_conninfo: str, template_db: str, site_pki: Path, appliance_mirror: Path) -> Iterator[PodmanSite]:
    if os.geteuid() != 0 or shutil.which("podman") is None:
        pytest.fail("podman workspaces need rootful podman: run as root after apt-get install podman runc")
    conninfo = create_database(admin_conninfo, "podman_workspaces", template=template_db)
    try:
        with podman_site(conninfo, site_pki, appliance_mirror, base_image(),
                         traversable_temp_dir("appliance-podman-")) as site:
            yield site
    finally:
        drop_database(admin_conninfo, "podman_workspaces")


@pytest.fixture(scope="module")
def owner(site: PodmanSite) -> Api:
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
        site: PodmanSite, owner: Api) -> None:
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


def test_a_privileged_container_fails_the_build_naming_the_rule(site: PodmanSite, owner: Api, tmp_path: Path) -> None:
    folder = _variant(tmp_path, "privileged", '  user     = "dev"\n', '  user     = "dev"\n  privileged = true\n')
    version = wait_version(owner, "privileged", push(owner, folder, "privileged")["id"])
    assert version["job"]["status"] == "succeeded", version["job"]["error"]
    workspace_id, build = _create(owner, "privileged", "escalate")
    assert build["status"] == "failed"
    assert "no-privileged" in build["job"]["error"] and "appliance_podman_container" in build["job"]["error"], (
        build["job"]["error"])
    assert site.owned("container", workspace_id) == []
    transition(owner, workspace_id, "delete")


def test_a_container_that_exits_at_once_fails_the_build_with_its_last_log_lines(
        site: PodmanSite, owner: Api, tmp_path: Path) -> None:
    folder = _variant(tmp_path, "crashes", 'entrypoint = ["sh", "-c", replace(',
                      'entrypoint = ["sh", "-c", "echo missing-config-file >&2; exit 3", replace(')
    assert wait_version(owner, "crashes", push(owner, folder, "crashes")["id"])["job"]["status"] == "succeeded"
    workspace_id, build = _create(owner, "crashes", "crash")
    assert build["status"] == "failed"
    logs = build_logs(owner, build["id"])
    # Its exit code shows unless the template's restart policy already restarted it (podman resets it then).
    assert "exited at once (" in build["job"]["error"], build["job"]["error"]
    assert "missing-config-file" in build["job"]["error"] + logs, logs
    assert site.owned("container", workspace_id) == []
    transition(owner, workspace_id, "delete")


def test_a_host_path_mount_fails_the_build_naming_the_rule(site: PodmanSite, owner: Api, tmp_path: Path) -> None:
    host_mount = '  mounts {\n    host_path = "/etc"\n    path      = "/host-etc"\n  }\n'
    folder = _variant(tmp_path, "hostpath", "  mounts {\n", host_mount + "  mounts {\n")
    assert wait_version(owner, "hostpath", push(owner, folder, "hostpath")["id"])["job"]["status"] == "succeeded"
    workspace_id, build = _create(owner, "hostpath", "escape")
    assert build["status"] == "failed"
    assert "no-host-mounts" in build["job"]["error"], build["job"]["error"]
    assert site.owned("container", workspace_id) == []
    transition(owner, workspace_id, "delete")


def _url(conninfo: str) -> str:
    """A key=value conninfo as the postgresql:// URL the config accepts."""
    parts = conninfo_to_dict(conninfo)
    query = urlencode({"host": parts["host"], "port": parts["port"]})
    return f"postgresql://{quote(str(parts['user']))}:{quote(str(parts['password']))}@/{parts['dbname']}?{query}"


def _doctor(site: PodmanSite, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
           "APPLIANCE_POSTGRES_URL": _url(site.conninfo), "APPLIANCE_RUNTIME_SOCKET": str(site.runtime.socket)}
    return subprocess.run([sys.executable, "-m", "appliance", "doctor", "--output", "json", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_doctor_lists_what_no_live_workspace_owns_and_fix_removes_only_that(site: PodmanSite, owner: Api) -> None:
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
