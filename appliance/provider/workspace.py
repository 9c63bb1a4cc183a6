"""Data sources appliance_workspace and appliance_workspace_owner: the build's facts, from the environment."""

from __future__ import annotations

import os
from typing import Any

from tf import schema, types
from tf.iface import Config, DataSource, ReadDataContext, State

from appliance.provider import env


def _computed(name: str, kind: Any, description: str) -> schema.Attribute:
    return schema.Attribute(name, kind, description=description, computed=True)


class WorkspaceData(DataSource):  # type: ignore[misc]  # tf ships no type hints
    """data "appliance_workspace" "me" {}"""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "workspace"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(version=0, description="The workspace this build is for.", attributes=[
            _computed("id", types.String(), "The workspace's id (all zeros outside the appliance)."),
            _computed("name", types.String(), "The workspace's name."),
            _computed("transition", types.String(), "What this build does: start, stop or delete."),
            _computed("start_count", types.Number(),
                      "1 when the workspace starts, else 0: use it as `count` for what should only exist while "
                      "the workspace runs."),
            _computed("template_id", types.String(), "The template's id."),
            _computed("template_name", types.String(), "The template's name."),
            _computed("template_version", types.String(), "The template version's name."),
            _computed("access_url", types.String(), "The appliance's URL, as agents reach it."),
            _computed("owner_id", types.String(), "The id of the workspace's owner."),
            _computed("registry", types.String(),
                      "host:port of the appliance's internal registry: write images as \"${...registry}/REPO:TAG\"."),
        ])

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        try:
            workspace = env.workspace(os.environ)
        except env.EnvError as err:
            ctx.diagnostics.add_error("Cannot read the workspace from the environment", str(err))
            return None
        return {"id": workspace.id, "name": workspace.name, "transition": workspace.transition,
                "start_count": workspace.start_count, "template_id": workspace.template_id,
                "template_name": workspace.template_name, "template_version": workspace.template_version,
                "access_url": workspace.access_url, "owner_id": workspace.owner_id,
                "registry": workspace.registry}


class OwnerData(DataSource):  # type: ignore[misc]  # tf ships no type hints
    """data "appliance_workspace_owner" "me" {}"""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "workspace_owner"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(version=0, description="The user who owns the workspace.", attributes=[
            _computed("id", types.String(), "The user's id."),
            _computed("name", types.String(), "The user's name."),
            _computed("email", types.String(), "The user's email address."),
            _computed("groups", types.List(types.String()), "The groups the user belongs to."),
            _computed("ssh_public_key", types.String(), "The user's SSH public key for this appliance."),
        ])

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        try:
            owner = env.owner(os.environ)
        except env.EnvError as err:
            ctx.diagnostics.add_error("Cannot read the workspace owner from the environment", str(err))
            return None
        return {"id": owner.id, "name": owner.name, "email": owner.email, "groups": list(owner.groups),
                "ssh_public_key": owner.ssh_public_key}
