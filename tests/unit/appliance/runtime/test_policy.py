"""The runtime policy: each thing a hostile template may ask for is refused, naming its rule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from appliance.config import load_server_config
from appliance.runtime import policy
from appliance.runtime.policy import Policy, PolicyRefusal, check_container, image_host, mount_path_problem
from appliance.runtime.service import RuntimeSettings
from appliance.sdk.runtime import ContainerSpec

REGISTRY = "127.0.0.1:3002"
POLICY = Policy(REGISTRY, max_cpus=4.0, max_memory_mb=8192)


def _spec(**overrides: Any) -> ContainerSpec:
    return ContainerSpec.model_validate({"image": f"{REGISTRY}/appliance/base:debian-12", "cpus": 1,
                                         "memory_mb": 1024, **overrides})


def test_a_plain_workspace_container_passes() -> None:
    check_container(_spec(mounts=[{"volume": "home", "path": "/home/dev"}], cap_add=["NET_RAW", "cap_audit_write"],
                          network_mode="bridge", pid_mode="private"), POLICY)


@pytest.mark.parametrize(("overrides", "rule"), [
    ({"image": "debian:12"}, policy.INTERNAL_REGISTRY_ONLY),
    ({"image": "docker.io/library/debian:12"}, policy.INTERNAL_REGISTRY_ONLY),
    ({"image": "127.0.0.1:3003/appliance/base:debian-12"}, policy.INTERNAL_REGISTRY_ONLY),
    ({"image": "localhost:3002/appliance/base:debian-12"}, policy.INTERNAL_REGISTRY_ONLY),
    ({"privileged": True}, policy.NO_PRIVILEGED),
    ({"mounts": [{"host_path": "/", "path": "/host"}]}, policy.NO_HOST_MOUNTS),
    ({"mounts": [{"volume": "home", "host_path": "/var/run", "path": "/x"}]}, policy.NO_HOST_MOUNTS),
    ({"mounts": [{"path": "/x"}]}, policy.OWN_VOLUMES_ONLY),
    ({"network_mode": "host"}, policy.NO_HOST_NETWORK),
    ({"network_mode": "container:ws-other-dev"}, policy.NO_HOST_NETWORK),
    ({"pid_mode": "host"}, policy.NO_HOST_PID),
    ({"pid_mode": "container:ws-other-dev"}, policy.NO_HOST_PID),
    ({"cap_add": ["SYS_ADMIN"]}, policy.CAPABILITIES),
    ({"cap_add": ["NET_RAW", "cap_net_admin"]}, policy.CAPABILITIES),
    ({"cap_add": ["ALL"]}, policy.CAPABILITIES),
    ({"cpus": 8}, policy.LIMITS_REQUIRED),
    ({"memory_mb": 8193}, policy.LIMITS_REQUIRED),
], ids=lambda value: str(value))
def test_each_breach_is_refused_naming_its_rule(overrides: dict[str, Any], rule: str) -> None:
    with pytest.raises(PolicyRefusal) as refused:
        check_container(_spec(**overrides), POLICY)
    assert refused.value.rule == rule
    assert refused.value.hint


def test_a_volume_name_that_escapes_the_workspace_is_refused_even_unvalidated() -> None:
    spec = _spec().model_copy(update={"mounts": [_spec(mounts=[{"volume": "ok", "path": "/x"}]).mounts[0]
                                                 .model_copy(update={"volume": "../ws-other-home"})]})
    with pytest.raises(PolicyRefusal) as refused:
        check_container(spec, POLICY)
    assert refused.value.rule == policy.OWN_VOLUMES_ONLY


def test_an_image_from_another_registry_names_the_image_and_the_registry_to_use() -> None:
    with pytest.raises(PolicyRefusal) as refused:
        check_container(_spec(image="quay.example/team/app:1"), POLICY)
    assert "quay.example/team/app:1" in refused.value.message and REGISTRY in refused.value.hint


@pytest.mark.parametrize(("image", "host"), [
    ("debian", None), ("library/debian:12", None), ("localhost/app", "localhost"),
    ("127.0.0.1:3002/a/b@sha256:00", "127.0.0.1:3002"), ("Registry.Example/a", "registry.example"),
])
def test_image_host_reads_the_registry_part_as_podman_does(image: str, host: str | None) -> None:
    assert image_host(image) == host


@pytest.mark.parametrize(("path", "is_ok"), [
    ("/home/dev", True), ("home", False), ("/a,b", False), ("/a:b", False), ("/a/../etc", False),
])
def test_mount_paths_must_be_absolute_and_plain(path: str, is_ok: bool) -> None:
    assert (mount_path_problem(path) is None) == is_ok


def test_the_extra_capabilities_are_ones_docker_grants_by_default() -> None:
    assert policy.EXTRA_CAPABILITIES.isdisjoint({"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "BPF"})


def test_the_configured_maxima_become_the_policys_and_default_to_the_host(tmp_path: Path) -> None:
    (tmp_path / "appliance.toml").write_text("runtime_max_cpus = 1.5\nruntime_max_memory_mb = 512\n")
    configured = RuntimeSettings.from_config(load_server_config({"config": str(tmp_path / "appliance.toml")},
                                                                environ={})).policy()
    assert (configured.max_cpus, configured.max_memory_mb) == (1.5, 512)
    (tmp_path / "empty.toml").write_text("")
    default = RuntimeSettings.from_config(load_server_config({"config": str(tmp_path / "empty.toml")},
                                                             environ={})).policy()
    assert default.max_cpus == os.cpu_count() and default.max_memory_mb > 512
