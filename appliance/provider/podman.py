"""Resources appliance_podman_volume and appliance_podman_container: the workspace's podman objects.

Both live in the runtime service (runtime.py), which owns podman and applies the workspace policy;
the provider only asks. A volume has no `count` in a template, so it survives stop and goes with
the workspace; a container follows `start_count`. Every change replaces the container; reading
one that vanished outside terraform drops it from state, so the next apply creates it again.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import TypeAdapter, ValidationError
from tf import schema, types
from tf.iface import Config, CreateContext, DeleteContext, ReadContext, Resource, State, UpdateContext, UpgradeContext
from tf.utils import Diagnostics

from appliance.provider.blocks import ListBlock
from appliance.provider.runtime import RuntimeCallFailed, RuntimeClient, image_problem
from appliance.provider.values import is_known
from appliance.sdk.runtime import OBJECT_NAME_HINT, ContainerSpec, ObjectName, VolumeSpec

_NAME = TypeAdapter(ObjectName)


def _input(name: str, kind: Any, description: str, *, required: bool = False, **extra: Any) -> schema.Attribute:
    """An argument of the object: any change replaces it (podman cannot change a container in place)."""
    return schema.Attribute(name, kind, description=description, required=required, optional=not required,
                            requires_replace=True, **extra)


def _computed(name: str, description: str) -> schema.Attribute:
    return schema.Attribute(name, types.String(), description=description, computed=True)


class _PodmanResource(Resource):  # type: ignore[misc]  # tf ships no type hints
    KIND = ""  # the service's collection: volumes or containers

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        name = config.get("name")
        if isinstance(name, str):
            try:
                _NAME.validate_python(name)
            except ValidationError:
                diags.add_error(f"{type_name} {name!r}: invalid name", OBJECT_NAME_HINT, path=["name"])

    def _call(self, diags: Diagnostics, type_name: str, method: str, name: str,
              body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The service's answer, or None with the failure added as a diagnostic naming the resource."""
        try:
            return RuntimeClient.from_env(os.environ).call(method, self.KIND, name, body)
        except RuntimeCallFailed as err:
            rule = f" (policy rule {err.rule})" if err.rule else ""
            diags.add_error(f"{type_name} {name!r}: {err.summary}{rule}", err.detail)
            return None

    def _put(self, ctx: CreateContext | UpdateContext, planned: State) -> State | None:
        try:
            body = self.spec(planned)
        except ValidationError as err:
            ctx.diagnostics.add_error(f"{ctx.type_name} {planned['name']!r}: invalid arguments", str(err))
            return None
        answer = self._call(ctx.diagnostics, ctx.type_name, "PUT", planned["name"], body)
        return None if answer is None else {**planned, **self.computed(answer)}

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        return self._put(ctx, planned)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        return self._put(ctx, planned)

    def read(self, ctx: ReadContext, current: State) -> State | None:
        failed = Diagnostics()
        answer = self._call(failed, ctx.type_name, "GET", current["name"])
        if failed.has_errors():
            ctx.diagnostics.diagnostics.extend(failed.diagnostics)
            return current
        return None if answer is None else {**current, **self.computed(answer)}

    def delete(self, ctx: DeleteContext, current: State) -> None:
        self._call(ctx.diagnostics, ctx.type_name, "DELETE", current["name"])

    def upgrade(self, ctx: UpgradeContext, version: int, old: State) -> State:
        return old

    def spec(self, planned: State) -> dict[str, Any]:
        raise NotImplementedError

    def computed(self, answer: dict[str, Any]) -> State:
        raise NotImplementedError


class PodmanVolume(_PodmanResource):
    KIND = "volumes"

    @classmethod
    def get_name(cls) -> str:
        return "podman_volume"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(version=0, description="A persistent podman volume of this workspace.", attributes=[
            _input("name", types.String(), "The template's name for it, unique in the workspace.", required=True),
            _input("labels", types.Map(types.String()), "Extra labels (the appliance's own always win)."),
            _computed("id", "The name podman knows it by."),
            _computed("podman_name", "The name podman knows it by (derived from the workspace)."),
            _computed("created_at", "When podman created it."),
        ])

    def spec(self, planned: State) -> dict[str, Any]:
        return VolumeSpec.model_validate({"labels": planned.get("labels") or {}}).model_dump()

    def computed(self, answer: dict[str, Any]) -> State:
        return {"id": answer["podman_name"], "podman_name": answer["podman_name"], "created_at": answer["created_at"]}


class PodmanContainer(_PodmanResource):
    KIND = "containers"

    @classmethod
    def get_name(cls) -> str:
        return "podman_container"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        strings = types.List(types.String())
        mount = schema.Block(attributes=[
            schema.Attribute("volume", types.String(), description="The name of one of this workspace's volumes.",
                             optional=True),
            schema.Attribute("host_path", types.String(), description="A host directory: always refused by policy.",
                             optional=True),
            schema.Attribute("path", types.String(), description="Where it appears in the container.",
                             required=True),
            schema.Attribute("read_only", types.Bool(), description="Mount it read-only.", optional=True),
        ])
        return schema.Schema(version=0, description="A podman container of this workspace.", attributes=[
            _input("name", types.String(), "The template's name for it, unique in the workspace.", required=True),
            _input("image", types.String(), "REGISTRY/REPOSITORY:TAG from the internal registry "
                                            "(data.appliance_workspace.me.registry).", required=True),
            _input("command", strings, "Arguments (the image's CMD)."),
            _input("entrypoint", strings, "The program that runs (the image's ENTRYPOINT)."),
            _input("env", types.Map(types.String()), "Environment variables."),
            _input("cpus", types.Number(), "CPU limit (required by policy).", required=True),
            _input("memory_mb", types.Number(), "Memory limit in MiB (required by policy).", required=True),
            _input("restart", types.String(), "no, on-failure, always or unless-stopped (default).",
                   computed=True, default="unless-stopped"),
            _input("hostname", types.String(), "The container's host name."),
            _input("user", types.String(), "The user the entrypoint runs as."),
            _input("labels", types.Map(types.String()), "Extra labels (the appliance's own always win)."),
            _input("privileged", types.Bool(), "Refused by policy; declared so the refusal names its rule."),
            _input("cap_add", strings, "Capabilities to add beyond the policy's fixed list are refused."),
            _input("network_mode", types.String(), "'host' is refused by policy."),
            _input("pid_mode", types.String(), "'host' is refused by policy."),
            _computed("id", "The name podman knows it by."),
            _computed("podman_id", "podman's container id."),
            _computed("image_digest", "The digest of the image it runs."),
            _computed("state", "podman's state: running, exited..."),
        ], block_types=[ListBlock("mounts", mount)])

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        image = config.get("image")
        if isinstance(image, str) and is_known(image) and (problem := image_problem(image, os.environ)):
            name = config.get("name")
            where = f" {name!r}" if isinstance(name, str) else ""
            diags.add_error(f"{type_name}{where}: image {image!r} is not from the internal registry", problem,
                            path=["image"])

    def spec(self, planned: State) -> dict[str, Any]:
        given = {key: value for key, value in planned.items()
                 if key in ContainerSpec.model_fields and key != "mounts" and value is not None}
        given["mounts"] = [{key: value for key, value in mount.items() if value is not None}
                           for mount in planned.get("mounts") or []]
        return ContainerSpec.model_validate(given).model_dump(mode="json")

    def computed(self, answer: dict[str, Any]) -> State:
        return {"id": answer["podman_name"], "podman_id": answer["podman_id"],
                "image_digest": answer["image_digest"], "state": answer["state"]}
