"""Resource appliance_agent: the agent that will run inside the workspace, and the token it logs in with.

The token is made once, at create, and kept on every update; it is sensitive, so terraform never
prints it. The appliance reads it from state after the build and stores only its hash.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

from tf import schema, types
from tf.iface import Config, CreateContext, State, UpdateContext
from tf.utils import Diagnostics

from appliance.provider import env
from appliance.provider.blocks import ListBlock
from appliance.provider.resource import StateResource
from appliance.provider.values import is_known

OPERATING_SYSTEMS = ("linux", "darwin", "windows")
ARCHITECTURES = ("amd64", "arm64", "armv7")
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
DEFAULT_CONNECTION_TIMEOUT = 120  # Coder's: seconds without a first connection before the agent shows "timeout"
DEFAULT_STARTUP_SCRIPT_TIMEOUT = 300  # Coder's: seconds the startup script may run before start_timeout


class Agent(StateResource):
    @classmethod
    def get_name(cls) -> str:
        return "agent"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        metadata = schema.Block(attributes=[
            schema.Attribute("key", types.String(), description="Unique per agent: letters, digits, '.', '_', '-'.",
                             required=True),
            schema.Attribute("display_name", types.String(), description="The label shown.", optional=True),
            schema.Attribute("script", types.String(), description="Runs in the workspace; its output is the value.",
                             required=True),
            schema.Attribute("interval", types.Number(), description="Seconds between runs.", required=True),
            schema.Attribute("timeout", types.Number(), description="Seconds a run may take (default: the interval).",
                             optional=True),
        ])
        return schema.Schema(version=0, description="An agent inside the workspace.", attributes=[
            schema.Attribute("os", types.String(), description=f"One of {', '.join(OPERATING_SYSTEMS)}.",
                             required=True, requires_replace=True),
            schema.Attribute("arch", types.String(), description=f"One of {', '.join(ARCHITECTURES)}.",
                             required=True, requires_replace=True),
            schema.Attribute("env", types.Map(types.String()), description="Environment for the agent's processes.",
                             optional=True),
            schema.Attribute("startup_script", types.String(), description="Runs when the agent starts.",
                             optional=True),
            schema.Attribute("dir", types.String(), description="The directory sessions start in.", optional=True),
            schema.Attribute("connection_timeout", types.Number(),
                             description="Seconds to wait for the agent's first connection before showing a "
                                         "timeout (0: never).", optional=True, computed=True,
                             default=DEFAULT_CONNECTION_TIMEOUT),
            schema.Attribute("startup_script_timeout", types.Number(),
                             description="Seconds the startup script may run before the agent reports start_timeout.",
                             optional=True, computed=True, default=DEFAULT_STARTUP_SCRIPT_TIMEOUT),
            schema.Attribute("troubleshooting_url", types.String(),
                             description="A guide the console links when the agent does not connect.", optional=True),
            schema.Attribute("id", types.String(), description="The agent's id.", computed=True),
            schema.Attribute("token", types.String(), description="The secret the agent authenticates with.",
                             computed=True, sensitive=True),
            schema.Attribute("init_script", types.String(),
                             description="Run this in the workspace to download and start the agent.", computed=True),
        ], block_types=[ListBlock("metadata", metadata)])

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        for key, allowed in (("os", OPERATING_SYSTEMS), ("arch", ARCHITECTURES)):
            value = config.get(key)
            if is_known(value) and value is not None and value not in allowed:
                diags.add_error(f"Unsupported agent {key} {value!r}", f"Use one of {', '.join(allowed)}.",
                                path=[key])
        for key in ("connection_timeout", "startup_script_timeout"):
            value = config.get(key)
            if isinstance(value, int | float) and value < 0:
                diags.add_error(f"{key} must not be negative, got {value}", "Use 0 to wait forever.", path=[key])
        for problem in metadata_problems(config.get("metadata")):
            diags.add_error(f"Invalid agent metadata: {problem}", "Fix the metadata block.", path=["metadata"])

    def create(self, ctx: CreateContext, planned: State) -> State:
        return {**planned, "id": str(uuid.uuid4()), "token": str(uuid.uuid4()),
                "init_script": env.agent_init_script(os.environ, planned["os"], planned["arch"])}

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State:
        kept = {key: current[key] for key in ("id", "token", "init_script")}
        return {**planned, **kept}


def metadata_problems(blocks: Any) -> list[str]:
    """What is wrong with an agent's metadata blocks (unknown values are not judged yet)."""
    problems: list[str] = []
    keys: list[str] = []
    for block in blocks if isinstance(blocks, list) else []:
        key, interval, timeout = block.get("key"), block.get("interval"), block.get("timeout")
        if isinstance(key, str):
            keys.append(key)
            if not METADATA_KEY.match(key):
                problems.append(f"key {key!r} must be 1-128 letters, digits, '.', '_' or '-'")
        if isinstance(interval, int | float) and interval < 1:
            problems.append(f"interval of {key!r} must be at least 1 second, got {interval}")
        if isinstance(timeout, int | float) and timeout < 0:
            problems.append(f"timeout of {key!r} must not be negative, got {timeout}")
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        problems.append(f"keys must be unique; repeated: {', '.join(repeated)}")
    return problems
