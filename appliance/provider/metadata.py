"""Resource appliance_metadata: facts and a daily cost shown beside another resource of the workspace."""

from __future__ import annotations

import uuid

from tf import schema, types
from tf.iface import Config, CreateContext, State, UpdateContext
from tf.utils import Diagnostics

from appliance.provider.blocks import ListBlock
from appliance.provider.resource import StateResource


class Metadata(StateResource):
    @classmethod
    def get_name(cls) -> str:
        return "metadata"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        item = schema.Block(attributes=[
            schema.Attribute("key", types.String(), description="The label.", required=True),
            schema.Attribute("value", types.String(), description="The value shown.", optional=True),
            schema.Attribute("sensitive", types.Bool(), description="Hide the value from users (not from state).",
                             optional=True),
        ])
        return schema.Schema(version=0, description="Metadata shown for a resource in the workspace.", attributes=[
            schema.Attribute("resource_id", types.String(), description="The id of the resource it describes.",
                             required=True, requires_replace=True),
            schema.Attribute("daily_cost", types.Number(), description="Cost units per day while it exists.",
                             optional=True, computed=True, default=0),
            schema.Attribute("id", types.String(), description="The metadata's id.", computed=True),
        ], block_types=[ListBlock("item", item)])

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        cost = config.get("daily_cost")
        if isinstance(cost, int | float) and cost < 0:
            diags.add_error(f"daily_cost must not be negative, got {cost}", "Use 0 for free resources.",
                            path=["daily_cost"])
        keys = [i.get("key") for i in config.get("item") or [] if isinstance(i, dict)]
        repeated = sorted({k for k in keys if isinstance(k, str) and keys.count(k) > 1})
        if repeated:
            diags.add_error(f"Metadata item keys must be unique; repeated: {', '.join(repeated)}",
                            "Give each item its own key.", path=["item"])

    def create(self, ctx: CreateContext, planned: State) -> State:
        return {**planned, "id": str(uuid.uuid4())}

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State:
        return {**planned, "id": current["id"]}
