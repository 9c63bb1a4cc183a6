"""A workspace's volumes and containers: what each route does, apart from HTTP (service.py is the shell).

Every operation is scoped to the build credential's workspace: a template's name resolves to that
workspace's podman name, and an object whose labels name another workspace is never touched.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from appliance.runtime.credentials import BuildCredential
from appliance.runtime.podman import Podman, PodmanFailed, RegistryAccess, podman_name
from appliance.runtime.policy import Policy, check_container, mount_path_problem
from appliance.sdk.runtime import (
    LABEL_BUILD,
    LABEL_NAME,
    LABEL_OWNER,
    LABEL_WORKSPACE,
    Container,
    ContainerSpec,
    Volume,
    VolumeSpec,
)

_OUR_LABELS = "dev.appliance."
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_POLL = 0.25


class Refusal(Exception):
    """A request the service answers with an error status: {"message", "detail", "rule"}."""

    status = 422

    def __init__(self, message: str, detail: str = "", *, rule: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.detail, self.rule = message, detail, rule
        if status is not None:
            self.status = status


def labels_for(build: BuildCredential, name: str, extra: dict[str, str]) -> dict[str, str]:
    """The template's labels, then ours, which win: a template cannot relabel an object as another workspace's."""
    own = {LABEL_WORKSPACE: build.workspace_id, LABEL_OWNER: build.owner_id, LABEL_BUILD: build.build_id,
           LABEL_NAME: name}
    return {**{key: value for key, value in extra.items() if not key.startswith(_OUR_LABELS)}, **own}


def _label_arguments(labels: dict[str, str]) -> list[str]:
    return [argument for key, value in labels.items() for argument in ("--label", f"{key}={value}")]


@dataclass
class Workspaces:
    podman: Podman
    policy: Policy
    registry: RegistryAccess
    settle_seconds: float = 2.0          # how long a new container must keep running to count as started
    extra_hosts: list[str] = field(default_factory=list)  # --add-host arguments (the forwarder's gateway)
    _locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    # Volumes

    async def put_volume(self, build: BuildCredential, name: str, spec: VolumeSpec) -> Volume:
        target = podman_name(build.workspace_id, name)
        async with self._locks[target]:
            found = await self._owned("volume", build, target)
            if found is None:
                labels = labels_for(build, name, spec.labels)
                await self.podman.run("volume", "create", *_label_arguments(labels), target)
                found = await self._owned("volume", build, target)
            assert found is not None
            return _volume(name, found)

    async def get_volume(self, build: BuildCredential, name: str) -> Volume:
        found = await self._owned("volume", build, podman_name(build.workspace_id, name))
        if found is None:
            raise Refusal(f"Volume {name!r} does not exist in this workspace.", status=404)
        return _volume(name, found)

    async def delete_volume(self, build: BuildCredential, name: str) -> None:
        target = podman_name(build.workspace_id, name)
        async with self._locks[target]:
            if await self._owned("volume", build, target) is None:
                return
            try:
                await self.podman.run("volume", "rm", target)
            except PodmanFailed as err:
                if "in use" in err.stderr.lower():
                    raise Refusal(f"Volume {name!r} is mounted by a container.",
                                  "Delete the container first (terraform destroys it before its volumes).",
                                  status=409) from err
                raise

    # Containers

    async def put_container(self, build: BuildCredential, token: str, name: str, spec: ContainerSpec) -> Container:
        check_container(spec, self.policy)
        _check_env(spec.env)
        target = podman_name(build.workspace_id, name)
        async with self._locks[target]:
            mounts = [await self._mount_argument(build, index, spec) for index in range(len(spec.mounts))]
            await self._pull(spec.image, token)
            await self._remove_if_owned(build, target)
            await self._create_and_start(target, self._create_arguments(build, name, spec, mounts), spec.env)
            found = await self._wait_running(target)
            return await self._container(name, found)

    async def get_container(self, build: BuildCredential, name: str) -> Container:
        found = await self._owned("container", build, podman_name(build.workspace_id, name))
        if found is None:
            raise Refusal(f"Container {name!r} does not exist in this workspace.", status=404)
        return await self._container(name, found)

    async def delete_container(self, build: BuildCredential, name: str) -> None:
        target = podman_name(build.workspace_id, name)
        async with self._locks[target]:
            await self._remove_if_owned(build, target)

    # Helpers

    async def _owned(self, kind: str, build: BuildCredential, target: str) -> dict[str, Any] | None:
        """podman's view of `target`, or None when absent; Refusal when it exists and is not this workspace's."""
        found = await self.podman.inspect(kind, target)
        if found is None:
            return None
        labels = found.get("Labels") if kind == "volume" else found.get("Config", {}).get("Labels")
        if not isinstance(labels, dict) or labels.get(LABEL_WORKSPACE) != build.workspace_id:
            raise Refusal(f"A {kind} named {target} exists on this host but was not made for this workspace.",
                          f"An administrator must remove it: podman {kind} rm {target}.", status=409)
        return found

    async def _remove_if_owned(self, build: BuildCredential, target: str) -> None:
        if await self._owned("container", build, target) is not None:
            await self.podman.remove_container(target)

    async def _mount_argument(self, build: BuildCredential, index: int, spec: ContainerSpec) -> str:
        mount = spec.mounts[index]
        assert mount.volume is not None  # the policy refused a mount without one
        if (problem := mount_path_problem(mount.path)) is not None:
            raise Refusal(f"mounts.{index}.path {problem}.", f"Got {mount.path!r}.")
        source = podman_name(build.workspace_id, mount.volume)
        if await self._owned("volume", build, source) is None:
            raise Refusal(f"mounts.{index}.volume: volume {mount.volume!r} does not exist in this workspace.",
                          "Declare it as an appliance_podman_volume and reference it, so it is created first.")
        return f"type=volume,source={source},destination={mount.path}" + (",ro=true" if mount.read_only else "")

    def _create_arguments(self, build: BuildCredential, name: str, spec: ContainerSpec, mounts: list[str]) -> list[str]:
        labels = labels_for(build, name, spec.labels)
        arguments = ["--name", podman_name(build.workspace_id, name), *_label_arguments(labels),
                     "--cpus", f"{spec.cpus:g}", "--memory", f"{spec.memory_mb}m",
                     "--pids-limit", str(self.policy.pids_limit), "--restart", spec.restart, *self.extra_hosts]
        for mount in mounts:
            arguments += ["--mount", mount]
        for capability in spec.cap_add:
            arguments += ["--cap-add", capability]
        if spec.hostname is not None:
            arguments += ["--hostname", spec.hostname]
        if spec.user is not None:
            arguments += ["--user", spec.user]
        if spec.entrypoint is not None:
            arguments += ["--entrypoint", json.dumps(spec.entrypoint)]
        return [*arguments, spec.image, *spec.command]

    async def _create_and_start(self, target: str, arguments: list[str], env: dict[str, str]) -> None:
        """podman's own refusals (a user the image lacks, a bad hostname) are the template's to fix: 422."""
        try:
            await self.podman.create_container(arguments, env)
            await self.podman.run("start", target)
        except PodmanFailed as err:
            await self.podman.remove_container(target)
            raise Refusal("podman could not create or start the container.", err.last_lines()) from err

    async def _pull(self, image: str, token: str) -> None:
        try:
            await self.podman.pull(image, self.registry, token)
        except PodmanFailed as err:
            raise Refusal(f"Image {image!r} could not be pulled from the internal registry.",
                          err.last_lines()) from err

    async def _wait_running(self, target: str) -> dict[str, Any]:
        """The container once it has run `settle_seconds`; Refusal with its last log lines if it stopped."""
        deadline = asyncio.get_running_loop().time() + self.settle_seconds
        while True:
            found = await self.podman.inspect("container", target)
            state = (found or {}).get("State", {})
            restarts = (found or {}).get("RestartCount") or 0
            if found is None or state.get("Status") != "running" or restarts > 0:
                logs = await self.podman.logs(target)
                await self.podman.remove_container(target)
                raise Refusal(f"The container exited at once ({_how_it_ended(state, restarts)}).",
                              logs or "It wrote nothing to stdout or stderr.")
            if asyncio.get_running_loop().time() >= deadline:
                return found
            await asyncio.sleep(_POLL)

    async def _container(self, name: str, found: dict[str, Any]) -> Container:
        digest = found.get("ImageDigest") or ""
        if not digest and found.get("Image"):
            image = await self.podman.inspect("image", str(found["Image"]))
            digest = (image or {}).get("Digest", "")
        labels = found.get("Config", {}).get("Labels", {})
        return Container(name=name, podman_name=str(found.get("Name", "")), podman_id=str(found.get("Id", "")),
                         workspace_id=str(labels.get(LABEL_WORKSPACE, "")), image=str(found.get("ImageName", "")),
                         image_digest=str(digest), state=str(found.get("State", {}).get("Status", "")),
                         created_at=str(found.get("Created", "")))


def _how_it_ended(state: dict[str, Any], restarts: int) -> str:
    """The exit code only when podman still holds it: a restart policy's next start resets it to 0."""
    if state.get("Status") == "exited" and not restarts:
        return f"exit code {state.get('ExitCode', '?')}"
    return f"restarted {restarts} time(s) by its restart policy, now {state.get('Status', 'gone')}"


def _volume(name: str, found: dict[str, Any]) -> Volume:
    return Volume(name=name, podman_name=str(found["Name"]), workspace_id=str(found["Labels"][LABEL_WORKSPACE]),
                  created_at=str(found.get("CreatedAt", "")))


def _check_env(env: dict[str, str]) -> None:
    """Names podman's env file can carry, and one-line values (the file has one variable per line)."""
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key):
            raise Refusal(f"env.{key}: not a variable name.", "Use letters, digits and '_', not starting with a digit.")
        if any(character in value for character in "\n\r\x00"):
            raise Refusal(f"env.{key}: values must be one line.",
                          "Pass multi-line text through the command or a file in the image, or base64 it.")
