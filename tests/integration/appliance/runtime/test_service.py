"""The runtime service with real podman and the real registry: volumes, containers, isolation, refusals."""

from __future__ import annotations

from typing import Any

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
