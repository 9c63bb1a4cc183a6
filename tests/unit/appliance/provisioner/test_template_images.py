"""Images a template's containers name: found in the import's plan; any outside the internal registry refused."""

from __future__ import annotations

from typing import Any

from appliance.provisioner.coordinator import foreign_image
from appliance.provisioner.extract import template_images

INTERNAL = frozenset({"127.0.0.1:3002", "localhost:3002"})


def _plan(*containers: tuple[str, Any]) -> dict[str, Any]:
    resources = [{"address": address, "mode": "managed", "type": "appliance_podman_container", "name": "dev",
                  "values": {"image": image} if image is not None else {}} for address, image in containers]
    resources.append({"address": "terraform_data.x", "mode": "managed", "type": "terraform_data", "name": "x",
                      "values": {"image": "docker.io/not/a/container"}})
    return {"planned_values": {"root_module": {"resources": resources}}}


def test_the_plan_gives_each_containers_address_and_image() -> None:
    plan = _plan(("appliance_podman_container.dev[0]", "127.0.0.1:3002/base/debian:12"),
                 ("appliance_podman_container.later", None))
    assert template_images(plan) == [("appliance_podman_container.dev[0]", "127.0.0.1:3002/base/debian:12")]


def test_an_image_from_another_registry_is_refused_naming_the_resource_and_the_image() -> None:
    images = template_images(_plan(("appliance_podman_container.ok", "localhost:3002/base/debian:12"),
                                   ("appliance_podman_container.dev", "docker.io/library/debian:12")))
    refusal = foreign_image(images, INTERNAL)
    assert refusal is not None
    assert "appliance_podman_container.dev" in refusal and "'docker.io/library/debian:12'" in refusal
    assert "appliance images import" in refusal


def test_images_of_the_internal_registry_pass() -> None:
    assert foreign_image(template_images(_plan(("appliance_podman_container.dev", "127.0.0.1:3002/a:1"))),
                         INTERNAL) is None
