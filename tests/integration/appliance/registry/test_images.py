"""`appliance images`: the base image imported with skopeo into the TLS registry, pulled by podman, listed.

The registry runs as `appliance server` runs it (the CA's `registry` certificate, its own port);
podman and skopeo trust only the internal CA root, through --cert-dir.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from appliance.app import CONTENT_SECURITY_POLICY
from appliance.config import Address, ServerConfig
from appliance.registry.images import cert_dir
from appliance.registry.tokens import challenge
from appliance.templates import images as template_images
from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.images import base_image, cli_env, podman, tls_registry
from tests.support.postgres import create_database, drop_database, free_port
from tests.support.server import LiveServer, live_server
from tests.support.workspaces import MINIMAL, push

APPLIANCE = [sys.executable, "-m", "appliance"]
NAME = "base/debian:12"


@dataclass
class Site:
    control: LiveServer
    config: ServerConfig
    registry: str   # host:port
    owner: Api
    imported: subprocess.CompletedProcess[str]


def _cli(config: ServerConfig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*APPLIANCE, *args], capture_output=True, text=True, timeout=600, check=False,
                          env=cli_env(config))


@pytest.fixture(scope="module")
def site(admin_conninfo: str, template_db: str, site_pki: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    conninfo = create_database(admin_conninfo, "registry_images", template=template_db)
    work = tmp_path_factory.mktemp("images")
    layout = base_image()
    address = Address("127.0.0.1", free_port())
    with live_server(conninfo, pki_dir=site_pki, registry_dir=work / "registry", registry_address=address) as control, \
            tls_registry(control.config):
        api = Api(control.url)
        api.create_first_user("owner")
        imported = _cli(control.config, "images", "import", str(layout), "--name", NAME)
        yield Site(control, control.config, str(address), api.as_user(api.login("owner")), imported)
    drop_database(admin_conninfo, "registry_images")


def test_the_imported_base_image_pulls_with_podman_trusting_only_the_internal_ca(site: Site, tmp_path: Path) -> None:
    assert site.imported.returncode == 0, site.imported.stderr
    assert f"Imported {site.registry}/{NAME} (sha256:" in site.imported.stdout
    member = site.owner.create_user()["username"]
    with cert_dir(site.config.pki_dir / "root" / "ca.crt.pem") as certs:
        pulled = podman(tmp_path, "pull", "--cert-dir", str(certs), "--creds", f"{member}:{DEFAULT_PASSWORD}",
                        f"{site.registry}/{NAME}")
    assert pulled.returncode == 0, pulled.stderr
    listed = podman(tmp_path, "image", "inspect", "--format", "{{.Config.User}}", f"{site.registry}/{NAME}")
    assert listed.stdout.strip() == "dev", listed.stderr
    untrusted = podman(tmp_path / "other", "pull", "--creds", f"{member}:{DEFAULT_PASSWORD}", f"{site.registry}/{NAME}")
    assert untrusted.returncode != 0 and "certificate" in untrusted.stderr


def test_an_anonymous_pull_gets_401_and_the_bearer_challenge(site: Site) -> None:
    response = requests.get(f"https://{site.registry}/v2/base/debian/manifests/12", timeout=10,
                            verify=str(site.config.pki_dir / "root" / "ca.crt.pem"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(challenge(site.control.config.access_url))


def test_a_members_push_is_refused(site: Site) -> None:
    member = site.owner.create_user()["username"]
    with cert_dir(site.config.pki_dir / "root" / "ca.crt.pem") as certs:
        pushed = subprocess.run(["skopeo", "copy", "--dest-cert-dir", str(certs), "--dest-creds",
                                 f"{member}:{DEFAULT_PASSWORD}", f"oci:{base_image()}:debian-12",
                                 f"docker://{site.registry}/team/members-own:1"],
                                capture_output=True, text=True, timeout=300, check=False)
    assert pushed.returncode != 0
    assert "unauthorized" in pushed.stderr.lower() or "denied" in pushed.stderr.lower(), pushed.stderr


def test_a_corrupt_layout_names_the_broken_file_without_a_traceback(site: Site, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(base_image(), layout)
    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].removeprefix("sha256:")
    layer = json.loads((layout / "blobs" / "sha256" / manifest).read_text())["layers"][0]["digest"]
    broken = layout / "blobs" / "sha256" / layer.removeprefix("sha256:")
    broken.write_bytes(broken.read_bytes()[:1000])
    result = _cli(site.config, "images", "import", str(layout), "--name", "team/broken:1")
    assert result.returncode == 1
    assert str(broken) in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_and_the_api_show_each_tag_its_digest_size_and_templates(site: Site) -> None:
    digest = site.imported.stdout.split("(")[1].split(",")[0]
    version = push(site.owner, MINIMAL, "uses-debian")
    with site.control.db.transaction() as conn:
        template_images.record(conn, version["id"], [("appliance_podman_container.dev", f"{site.registry}/{NAME}")])
    listed = _cli(site.config, "images", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    tags = {(r["name"], t["tag"]): t for r in json.loads(listed.stdout)["repositories"] for t in r["tags"]}
    assert tags[("base/debian", "12")]["digest"] == digest
    assert tags[("base/debian", "12")]["size"] > 50_000_000
    assert tags[("base/debian", "12")]["templates"] == ["uses-debian"]

    admin = site.owner.as_user(site.owner.login(site.owner.create_user(roles=["template-admin"])["username"]))
    answer = admin.get("/api/v2/images")
    assert answer.status_code == 200, answer.text
    assert answer.json()["reachable"] is True
    assert answer.json()["repositories"][0]["tags"][0]["templates"] == ["uses-debian"]
    member = site.owner.as_user(site.owner.login(site.owner.create_user()["username"]))
    assert member.get("/api/v2/images").status_code == 403


def test_the_console_images_page_shows_the_image_to_template_admins_only(site: Site) -> None:
    digest = site.imported.stdout.split("(")[1].split(",")[0]

    def page_for(roles: list[str]) -> requests.Response:
        browser = requests.Session()
        username = site.owner.create_user(roles=roles)["username"]
        login = browser.post(site.control.url + "/api/v2/users/login", timeout=30,
                             json={"username": username, "password": DEFAULT_PASSWORD})
        assert login.status_code == 201, login.text
        return browser.get(site.control.url + "/admin/images", timeout=30)

    shown = page_for(["template-admin"])
    assert shown.status_code == 200, shown.text
    assert f'data-reference="{site.registry}/{NAME}"' in shown.text and digest[:19] in shown.text
    assert shown.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY  # no external asset let in
    assert page_for([]).status_code == 403
