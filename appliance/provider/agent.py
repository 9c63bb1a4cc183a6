"""Resource appliance_agent: the agent that will run inside the workspace, and the token it logs in with.

The token is made once, at create, and kept on every update; it is sensitive, so terraform never
prints it. The appliance reads it from state after the build and stores only its hash.
"""

from __future__ import annotations

import os
import uuid

from tf import schema, types
from tf.iface import Config, CreateContext, State, UpdateContext
from tf.utils import Diagnostics

from appliance.provider import env
from appliance.provider.resource import StateResource
from appliance.provider.values import is_known

OPERATING_SYSTEMS = ("linux", "darwin", "windows")
ARCHITECTURES = ("amd64", "arm64", "armv7")


class Agent(StateResource):
    @classmethod
    def get_name(cls) -> str:
        return "agent"

    @classmethod
    def get_schema(cls) -> schema.Schema:
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
            schema.Attribute("id", types.String(), description="The agent's id.", computed=True),
            schema.Attribute("token", types.String(), description="The secret the agent authenticates with.",
                             computed=True, sensitive=True),
            schema.Attribute("init_script", types.String(),
                             description="Run this in the workspace to download and start the agent.", computed=True),
        ])

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        for key, allowed in (("os", OPERATING_SYSTEMS), ("arch", ARCHITECTURES)):
            value = config.get(key)
            if is_known(value) and value is not None and value not in allowed:
                diags.add_error(f"Unsupported agent {key} {value!r}", f"Use one of {', '.join(allowed)}.",
                                path=[key])

    def create(self, ctx: CreateContext, planned: State) -> State:
        return {**planned, "id": str(uuid.uuid4()), "token": str(uuid.uuid4()),
                "init_script": env.agent_init_script(os.environ, planned["os"], planned["arch"])}

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State:
        kept = {key: current[key] for key in ("id", "token", "init_script")}
        return {**planned, **kept}
