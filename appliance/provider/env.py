"""The environment contract between the provisioner and the provider, read into plain values.

Every value is a string. Terraform run by hand (no APPLIANCE_* set) gets harmless defaults:
transition start, workspace "default", owner "default", all-zero ids.

    APPLIANCE_ACCESS_URL                     the appliance's URL (http://127.0.0.1:3000/)
    APPLIANCE_WORKSPACE_ID / _NAME           the workspace
    APPLIANCE_WORKSPACE_TRANSITION           start | stop | delete
    APPLIANCE_WORKSPACE_TEMPLATE_ID / _TEMPLATE_NAME / _TEMPLATE_VERSION
    APPLIANCE_WORKSPACE_BUILD_ID             set for a workspace build, absent for a template import
    APPLIANCE_WORKSPACE_OWNER_ID / _NAME / _EMAIL / _SSH_PUBLIC_KEY
    APPLIANCE_WORKSPACE_OWNER_GROUPS         JSON list of strings
    APPLIANCE_PARAMETER_<sha256 hex of name> the parameter's value (list(string): a JSON list)
    APPLIANCE_AGENT_SCRIPT_<os>_<arch>       the agent init script; ${ACCESS_URL} is substituted
    APPLIANCE_REGISTRY                       host:port of the internal registry (every job)
    APPLIANCE_RUNTIME_SOCKET / _TOKEN        the runtime service and the build's credential (builds only; runtime.py)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.sdk.runtime import REGISTRY_ENV

ACCESS_URL = "APPLIANCE_ACCESS_URL"
WORKSPACE = "APPLIANCE_WORKSPACE_"
OWNER = "APPLIANCE_WORKSPACE_OWNER_"
PARAMETER = "APPLIANCE_PARAMETER_"
AGENT_SCRIPT = "APPLIANCE_AGENT_SCRIPT_"
BUILD_ID = WORKSPACE + "BUILD_ID"

TRANSITIONS = ("start", "stop", "delete")
NIL_UUID = "00000000-0000-0000-0000-000000000000"
DEFAULT_ACCESS_URL = "http://127.0.0.1:3000/"
DEFAULT_REGISTRY = "127.0.0.1:3002"  # config's default registry_address, for terraform run by hand


class EnvError(ValueError):
    """An APPLIANCE_* variable the provisioner set to something the provider cannot use."""


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    transition: str
    template_id: str
    template_name: str
    template_version: str
    build_id: str
    access_url: str
    owner_id: str
    registry: str

    @property
    def start_count(self) -> int:
        """1 while the workspace should run, else 0: `count = ...start_count` makes a resource ephemeral."""
        return 1 if self.transition == "start" else 0

    @property
    def is_build(self) -> bool:
        """A workspace build (values are final) rather than a template import (values may be missing)."""
        return bool(self.build_id)


@dataclass(frozen=True)
class Owner:
    id: str
    name: str
    email: str
    groups: tuple[str, ...]
    ssh_public_key: str


def workspace(env: Mapping[str, str]) -> Workspace:
    transition = env.get(WORKSPACE + "TRANSITION") or "start"
    if transition not in TRANSITIONS:
        raise EnvError(f"{WORKSPACE}TRANSITION is {transition!r}; expected one of {', '.join(TRANSITIONS)}.")
    return Workspace(
        id=env.get(WORKSPACE + "ID") or NIL_UUID,
        name=env.get(WORKSPACE + "NAME") or "default",
        transition=transition,
        template_id=env.get(WORKSPACE + "TEMPLATE_ID", ""),
        template_name=env.get(WORKSPACE + "TEMPLATE_NAME", ""),
        template_version=env.get(WORKSPACE + "TEMPLATE_VERSION", ""),
        build_id=env.get(BUILD_ID, ""),
        access_url=env.get(ACCESS_URL) or DEFAULT_ACCESS_URL,
        owner_id=env.get(OWNER + "ID") or NIL_UUID,
        registry=env.get(REGISTRY_ENV) or DEFAULT_REGISTRY,
    )


def owner(env: Mapping[str, str]) -> Owner:
    raw_groups = env.get(OWNER + "GROUPS") or "[]"
    try:
        groups = json.loads(raw_groups)
    except ValueError as err:
        raise EnvError(f"{OWNER}GROUPS is not JSON ({err}).") from err
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise EnvError(f"{OWNER}GROUPS must be a JSON list of strings, got {raw_groups!r}.")
    return Owner(
        id=env.get(OWNER + "ID") or NIL_UUID,
        name=env.get(OWNER + "NAME") or "default",
        email=env.get(OWNER + "EMAIL", ""),
        groups=tuple(groups),
        ssh_public_key=env.get(OWNER + "SSH_PUBLIC_KEY", ""),
    )


def parameter_variable(name: str) -> str:
    """The variable carrying parameter `name` (hashed: names may hold characters env names cannot)."""
    return PARAMETER + hashlib.sha256(name.encode()).hexdigest()


def parameter_value(env: Mapping[str, str], name: str) -> str | None:
    return env.get(parameter_variable(name))


def agent_init_script(env: Mapping[str, str], os_name: str, arch: str) -> str:
    """The script that starts the agent on <os>/<arch>, or "" when the provisioner supplied none."""
    script = env.get(f"{AGENT_SCRIPT}{os_name}_{arch}", "")
    return script.replace("${ACCESS_URL}", workspace(env).access_url)
