"""The runtime service with real podman and the real registry: volumes, containers, isolation, refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
import requests

from appliance.runtime.podman import find_podman, list_owned, remove_owned
from tests.integration.appliance.runtime.conftest import RuntimeSite

SLEEP = ["sleep", "infinity"]


def _container(site: RuntimeSite, **overrides: Any) -> dict[str, Any]:
    return {"image": site.image, "command": SLEEP, "cpus": 0.5, "memory_mb": 256, **overrides}


def test_a_file_in_a_volume_survives_container_delete_and_recreate(runtime_site: RuntimeSite) -> None:
    client = runtime_site.client()
    status, volume = client.request("PUT", "/v1/volumes/home", {})
    assert status == 200, volume
    spec = _container(runtime_site, mounts=[{"volume": "home", "path": "/home/dev"}], user="root",
                      entrypoint=["sh", "-c", "echo kept > /home/dev/note && exec sleep infinity"])
    status, created = client.request("PUT", "/v1/containers/dev", spec)
    assert status == 200, created
    assert created["state"] == "running" and created["image_digest"].startswith("sha256:")

    assert client.request("DELETE", "/v1/containers/dev")[0] == 204
    assert client.request("GET", "/v1/containers/dev")[0] == 404
    status, again = client.request("PUT", "/v1/containers/dev", _container(
        runtime_site, mounts=[{"volume": "home", "path": "/home/dev"}]))
    assert status == 200, again
    shown = runtime_site.podman("exec", again["podman_name"], "cat", "/home/dev/note").stdout
    assert shown.strip() == "kept"
    assert client.request("GET", "/v1/volumes/home")[1]["podman_name"] == volume["podman_name"]


def test_a_workspace_cannot_see_or_delete_another_workspaces_container_or_volume(runtime_site: RuntimeSite) -> None:
    mine, theirs = runtime_site.client(), runtime_site.client()
    assert mine.request("PUT", "/v1/volumes/home", {})[0] == 200
    status, container = mine.request("PUT", "/v1/containers/dev", _container(
        runtime_site, mounts=[{"volume": "home", "path": "/home/dev"}]))
    assert status == 200, container

    assert theirs.request("GET", "/v1/containers/dev")[0] == 404
    assert theirs.request("GET", "/v1/volumes/home")[0] == 404
    assert theirs.request("DELETE", "/v1/containers/dev")[0] == 204  # its own "dev", which does not exist
    assert theirs.request("DELETE", "/v1/volumes/home")[0] == 204
    status, refused = theirs.request("PUT", "/v1/containers/spy", _container(
        runtime_site, mounts=[{"volume": "home", "path": "/mnt"}]))
    assert status == 422 and "mounts.0.volume" in refused["message"]

    assert mine.request("GET", "/v1/containers/dev")[1]["state"] == "running"
    assert mine.request("GET", "/v1/volumes/home")[0] == 200


@pytest.mark.parametrize(("overrides", "rule"), [
    ({"privileged": True}, "no-privileged"),
    ({"mounts": [{"host_path": "/etc", "path": "/host-etc"}]}, "no-host-mounts"),
    ({"network_mode": "host"}, "no-host-network"),
    ({"pid_mode": "host"}, "no-host-pid"),
    ({"cap_add": ["SYS_ADMIN"]}, "capabilities"),
    ({"cpus": 64}, "limits-required"),
    ({"memory_mb": None}, "limits-required"),
    ({"image": "docker.io/library/debian:12"}, "internal-registry-only"),
], ids=lambda value: str(value))
def test_each_policy_refusal_is_a_403_naming_its_rule(runtime_site: RuntimeSite, overrides: dict[str, Any],
                                                      rule: str) -> None:
    spec = {key: value for key, value in _container(runtime_site, **overrides).items() if value is not None}
    status, refused = runtime_site.client().request("PUT", "/v1/containers/dev", spec)
    assert status == 403, refused
    assert refused["rule"] == rule and refused["message"] and refused["detail"]


def test_a_container_that_exits_at_once_fails_with_its_last_log_lines(runtime_site: RuntimeSite) -> None:
    client = runtime_site.client()
    status, refused = client.request("PUT", "/v1/containers/dev", _container(
        runtime_site, entrypoint=["sh", "-c", "echo the-init-script-failed >&2; exit 3"]))
    assert status == 422, refused
    assert "exited" in refused["message"] and "the-init-script-failed" in refused["detail"]
    assert client.request("GET", "/v1/containers/dev")[0] == 404  # nothing left behind for terraform to lose


def test_a_user_the_image_lacks_is_the_templates_error_not_the_services(runtime_site: RuntimeSite) -> None:
    client = runtime_site.client()
    status, refused = client.request("PUT", "/v1/containers/dev", _container(runtime_site, user="nobody-here"))
    assert status == 422, refused
    assert "nobody-here" in refused["detail"]
    assert client.request("GET", "/v1/containers/dev")[0] == 404


def test_a_container_reaches_a_loopback_access_url_through_the_forwarder(runtime_site: RuntimeSite) -> None:
    client = runtime_site.client()
    status, container = client.request("PUT", "/v1/containers/dev", _container(runtime_site))
    assert status == 200, container
    port = runtime_site.control.config.access_url.rsplit(":", 1)[1]
    fetched = runtime_site.podman("exec", container["podman_name"], "curl", "-fsS", "--max-time", "20",
                                  f"http://host.containers.internal:{port}/healthz", check=False)
    assert fetched.returncode == 0 and fetched.stdout == "OK", fetched.stderr


@pytest.mark.parametrize(("token", "says"), [
    (None, "No runtime credential"),
    ("not-a-jwt", "not a JWT"),
], ids=["no credential", "garbage"])
def test_a_request_without_a_valid_credential_gets_401_saying_why(runtime_site: RuntimeSite, token: str | None,
                                                                   says: str) -> None:
    client = runtime_site.client(token=token or "")
    if token is None:
        client.token = None
    status, refused = client.request("GET", "/v1/volumes/home")
    assert status == 401 and says in refused["message"]


def test_an_expired_credential_gets_401(runtime_site: RuntimeSite) -> None:
    token = runtime_site.credential(runtime_site.new_workspace(), lifetime=timedelta(seconds=-120))
    status, refused = runtime_site.client(token=token).request("GET", "/v1/volumes/home")
    assert status == 401 and "expired" in refused["message"]


@pytest.mark.parametrize(("raw", "status", "says"), [
    (b"{not json", 400, "not JSON"),
    (b'{"image": "x\\u0000", "cpus": 1, "memory_mb": 1}', 400, "image"),
    (b'{"image": "x", "cpus": 1, "memory_mb": 1' + b"0" * 40 + b"}", 400, "memory_mb"),
    (b'{"image": "x", "cpus": 1, "memory_mb": 1, "volumes_from": ["other"]}', 422, "volumes_from"),
    (b'{"image": "x", "cpus": "many", "memory_mb": 1}', 422, "cpus"),
], ids=["malformed JSON", "NUL byte", "huge number", "unknown field", "wrong type"])
def test_a_bad_body_gets_a_4xx_naming_the_field(runtime_site: RuntimeSite, raw: bytes, status: int,
                                                says: str) -> None:
    answer, refused = runtime_site.client().request("PUT", "/v1/containers/dev", raw=raw)
    assert answer == status, refused
    assert says in refused["message"]


def test_a_bad_object_name_or_env_gets_422_naming_it(runtime_site: RuntimeSite) -> None:
    client = runtime_site.client()
    status, refused = client.request("PUT", "/v1/volumes/Bad..Name", {})
    assert status == 422 and "name" in refused["message"]
    status, refused = client.request("PUT", "/v1/containers/dev", _container(runtime_site, env={"A": "two\nlines"}))
    assert status == 422 and "env.A" in refused["message"]


def test_a_build_credential_gets_a_pull_only_registry_token(runtime_site: RuntimeSite) -> None:
    token = runtime_site.credential(runtime_site.new_workspace())
    answer = requests.get(runtime_site.control.url + "/api/v2/registry/token", auth=("workspace", token), timeout=30,
                          params={"service": "appliance-registry", "scope": "repository:appliance/base:pull,push"})
    assert answer.status_code == 200, answer.text
    access = jwt.decode(answer.json()["token"], options={"verify_signature": False})["access"]
    assert access == [{"type": "repository", "name": "appliance/base", "actions": ["pull"]}]
    forged = requests.get(runtime_site.control.url + "/api/v2/registry/token", auth=("workspace", "a.b.c"),
                          params={"service": "appliance-registry"}, timeout=30)
    assert forged.status_code == 401 and "Bearer realm" in forged.headers["WWW-Authenticate"]


def test_list_owned_finds_a_workspaces_container_and_volume_by_their_labels(runtime_site: RuntimeSite) -> None:
    workspace_id = runtime_site.new_workspace()
    client = runtime_site.client(workspace_id)
    assert client.request("PUT", "/v1/volumes/home", {"labels": {"dev.appliance.workspace-id": "forged"}})[0] == 200
    assert client.request("PUT", "/v1/containers/dev", _container(
        runtime_site, mounts=[{"volume": "home", "path": "/home/dev"}]))[0] == 200
    podman = find_podman(runtime_site.settings.state_dir)

    found = {(item.kind, item.podman_name) for item in list_owned(podman) if item.workspace_id == workspace_id}
    assert found == {("container", f"ws-{workspace_id}-dev"), ("volume", f"ws-{workspace_id}-home")}
    for item in [item for item in list_owned(podman) if item.workspace_id == workspace_id]:
        remove_owned(podman, item)
    assert client.request("GET", "/v1/containers/dev")[0] == 404
    assert client.request("GET", "/v1/volumes/home")[0] == 404
