"""Resource appliance_app: something a user opens in a workspace (a web app by URL, or a command)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tf import schema, types
from tf.iface import Config, CreateContext, State, UpdateContext
from tf.utils import Diagnostics

from appliance.provider.blocks import SingleBlock
from appliance.provider.resource import StateResource
from appliance.provider.values import is_known

SLUG = re.compile(r"[a-z0-9](-?[a-z0-9])*")
SHARING = ("owner", "authenticated", "public")


def app_problems(config: Config) -> list[tuple[str, str]]:
    """(attribute, problem) for each rule a known app configuration breaks."""
    problems = []
    slug = config.get("slug")
    if isinstance(slug, str) and not SLUG.fullmatch(slug):
        problems.append(("slug", f"slug {slug!r} must be lowercase letters and digits, with single hyphens "
                                 "between them (e.g. code-server)"))
    url, command = config.get("url"), config.get("command")
    if is_known(url) and is_known(command) and url is not None and command is not None:
        problems.append(("command", "an app has a url or a command, not both"))
    share = config.get("share")
    if isinstance(share, str) and share not in SHARING:
        problems.append(("share", f"share {share!r} must be one of {', '.join(SHARING)}"))
    healthcheck: Any = config.get("healthcheck")
    if isinstance(healthcheck, dict):
        for key in ("interval", "threshold"):
            value = healthcheck.get(key)
            if isinstance(value, int | float) and value < 1:
                problems.append(("healthcheck", f"healthcheck {key} must be at least 1, got {value}"))
        if is_known(url) and url is None:
            problems.append(("healthcheck", "a healthcheck needs the app's url"))
    return problems


class App(StateResource):
    @classmethod
    def get_name(cls) -> str:
        return "app"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        healthcheck = schema.Block(attributes=[
            schema.Attribute("url", types.String(), description="Polled over HTTP from inside the workspace.",
                             required=True),
            schema.Attribute("interval", types.Number(), description="Seconds between checks.", required=True),
            schema.Attribute("threshold", types.Number(), description="Failed checks before the app is unhealthy.",
                             required=True),
        ])
        return schema.Schema(version=0, description="An app users open in the workspace.", attributes=[
            schema.Attribute("agent_id", types.String(), description="The agent that serves the app.",
                             required=True, requires_replace=True),
            schema.Attribute("slug", types.String(), description="Unique per agent; used in URLs.", required=True,
                             requires_replace=True),
            schema.Attribute("display_name", types.String(), description="The name shown to users.", optional=True),
            schema.Attribute("url", types.String(), description="Where the app listens, seen from the workspace.",
                             optional=True),
            schema.Attribute("command", types.String(), description="A command run in a terminal instead of a URL.",
                             optional=True),
            schema.Attribute("icon", types.String(), description="An icon URL or path.", optional=True),
            schema.Attribute("share", types.String(), description=f"Who may open it: {', '.join(SHARING)}.",
                             optional=True, computed=True, default="owner"),
            schema.Attribute("id", types.String(), description="The app's id.", computed=True),
        ], block_types=[SingleBlock("healthcheck", healthcheck)])

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        for attribute, problem in app_problems(config):
            diags.add_error(f"Invalid appliance_app: {problem}", "Fix the app block.", path=[attribute])

    def create(self, ctx: CreateContext, planned: State) -> State:
        return {**planned, "id": str(uuid.uuid4())}

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State:
        return {**planned, "id": current["id"]}
