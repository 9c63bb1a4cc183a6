"""The podman resources' pure side (appliance/provider/podman.py, runtime.py): what is refused at plan time,
what the runtime service is sent, and how its refusals read."""

from __future__ import annotations

from typing import Any

import pytest
from tf.types import Unknown
from tf.utils import Diagnostics

from appliance.provider.podman import PodmanContainer, PodmanVolume
from appliance.provider.runtime import RuntimeCallFailed, RuntimeClient, _refusal, image_problem, image_registry
from appliance.sdk.runtime import REGISTRY_ENV, SOCKET_ENV, TOKEN_ENV

INTERNAL = "127.0.0.1:3002"
CONTAINER = "appliance_podman_container"


@pytest.mark.parametrize(("image", "registry"), [
    ("127.0.0.1:3002/base/debian:12", "127.0.0.1:3002"),
    ("registry.example.internal/base/debian@sha256:ab", "registry.example.internal"),
    ("localhost/base", "localhost"),
    ("debian:12", "docker.io"),
    ("library/debian", "docker.io"),
    ("quay/debian", "docker.io"),
])
def test_an_images_registry_follows_dockers_rule(image: str, registry: str) -> None:
    assert image_registry(image) == registry


@pytest.mark.parametrize(("image", "refused"), [
    ("127.0.0.1:3002/base/debian:12", False),
    ("docker.io/library/debian:12", True),
    ("debian:12", True),
    ("127.0.0.1:3003/base/debian:12", True),
    ("127.0.0.1/base/debian:12", True),
])
def test_only_images_from_the_internal_registry_pass(image: str, refused: bool) -> None:
    problem = image_problem(image, {REGISTRY_ENV: INTERNAL})
    assert (problem is not None) is refused
    if problem:
        assert image in problem and INTERNAL in problem and "appliance images import" in problem


def test_terraform_by_hand_has_no_registry_to_compare_with_and_leaves_it_to_the_service() -> None:
    assert image_problem("docker.io/library/debian:12", {}) is None


def _validate(resource: Any, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    monkeypatch.setenv(REGISTRY_ENV, INTERNAL)
    diags = Diagnostics()
    resource.validate(diags, f"appliance_{resource.get_name()}", config)
    return [(d.summary, d.detail) for d in diags.diagnostics]


def test_a_foreign_image_is_refused_at_plan_naming_the_resource_and_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    [(summary, detail)] = _validate(PodmanContainer(None), {"name": "workspace", "image": "docker.io/library/debian:12",
                                                             "cpus": 1, "memory_mb": 512}, monkeypatch)
    assert summary.startswith(f"{CONTAINER} 'workspace'") and "docker.io/library/debian:12" in summary
    assert "internal registry 127.0.0.1:3002" in detail


def test_an_image_not_known_yet_waits_for_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _validate(PodmanContainer(None), {"name": "workspace", "image": Unknown}, monkeypatch) == []


@pytest.mark.parametrize("resource", [PodmanContainer(None), PodmanVolume(None)], ids=["container", "volume"])
@pytest.mark.parametrize("name", ["Home", "-home", "a" * 64, "home dir"])
def test_a_name_podman_could_not_carry_is_refused_with_the_rule(resource: Any, name: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    [(summary, detail)] = _validate(resource, {"name": name}, monkeypatch)
    assert repr(name) in summary and "invalid name" in summary and "lowercase" in detail


def test_the_container_spec_sent_carries_what_the_template_set_and_defaults_for_the_rest() -> None:
    planned = {"name": "workspace", "image": f"{INTERNAL}/base/debian:12", "cpus": 2, "memory_mb": 2048.0,
               "entrypoint": ["sh", "-c", "echo one\necho two"], "command": None, "env": {"A": "b"},
               "restart": "unless-stopped", "user": "dev", "hostname": None, "privileged": None, "cap_add": None,
               "labels": None, "network_mode": None, "pid_mode": None, "id": Unknown, "state": Unknown,
               "mounts": [{"volume": "home", "path": "/home/dev", "read_only": None, "host_path": None}]}
    spec = PodmanContainer(None).spec(planned)
    assert spec["entrypoint"] == ["sh", "-c", "echo one\necho two"]  # a multi-line script passes
    assert spec["memory_mb"] == 2048 and spec["cpus"] == 2.0 and spec["user"] == "dev" and spec["env"] == {"A": "b"}
    assert spec["mounts"] == [{"volume": "home", "host_path": None, "path": "/home/dev", "read_only": False}]
    assert spec["privileged"] is False and spec["cap_add"] == [] and spec["command"] == []


def test_a_hostile_spec_is_sent_as_asked_so_the_service_names_the_rule_it_breaks() -> None:
    planned = {"name": "x", "image": f"{INTERNAL}/base/debian:12", "cpus": 1, "memory_mb": 256, "privileged": True,
               "network_mode": "host", "mounts": [{"host_path": "/etc", "path": "/host"}]}
    spec = PodmanContainer(None).spec(planned)
    assert spec["privileged"] is True and spec["network_mode"] == "host"
    assert spec["mounts"][0]["host_path"] == "/etc"


def test_a_policy_refusal_names_its_rule_and_keeps_the_services_message() -> None:
    refused = _refusal(403, {"message": "Privileged containers are not allowed.", "rule": "no-privileged"})
    assert refused.rule == "no-privileged" and refused.summary == "Privileged containers are not allowed."
    assert "no-privileged" in refused.detail
    other = _refusal(500, {"message": "boom"})
    assert other.rule is None and "HTTP 500" in other.detail


def test_without_the_builds_socket_and_credential_the_provider_says_they_come_with_workspace_builds() -> None:
    for env in ({}, {SOCKET_ENV: "/run/appliance-runtime.sock"}, {TOKEN_ENV: "t"}):
        with pytest.raises(RuntimeCallFailed) as failed:
            RuntimeClient.from_env(env)
        assert "workspace builds only" in failed.value.detail
