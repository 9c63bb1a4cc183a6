"""Data source appliance_parameter: a template parameter's definition, and its value for this build.

The definition is checked at validate time (a template bug); the value (from the environment,
else the default) when the data source is read, so a bad value fails the plan naming the
parameter, the value and the rule.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from tf import schema, types
from tf.iface import Config, DataSource, ReadDataContext, State
from tf.utils import Diagnostics

from appliance.provider import env
from appliance.provider.blocks import ListBlock, SingleBlock
from appliance.provider.parameter import (
    TYPES,
    Option,
    Parameter,
    ParameterError,
    Validation,
    check_definition,
    resolve_value,
)
from appliance.provider.values import is_known

_IDS = uuid.UUID("6f0d1c4e-53a4-4c0f-9a39-2f4f5d1f7a10")  # namespace for parameter ids (uuid5)


def _optional(name: str, kind: Any, description: str, *, computed: bool = False) -> schema.Attribute:
    return schema.Attribute(name, kind, description=description, optional=True, computed=computed)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def definition(config: Config) -> Parameter:
    """The Parameter a known configuration describes."""
    rules = config.get("validation")
    validation = Validation(min=_number(rules.get("min")), max=_number(rules.get("max")), regex=rules.get("regex"),
                            error=rules.get("error")) if rules else None
    options = tuple(Option(o["name"], o["value"], o.get("description") or "") for o in config.get("option") or [])
    return Parameter(name=config["name"], type=config.get("type") or "string", default=config.get("default"),
                     options=options, validation=validation)


class ParameterData(DataSource):  # type: ignore[misc]  # tf ships no type hints
    """data "appliance_parameter" "NAME" { name = "..." ... }"""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "parameter"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        option = schema.Block(attributes=[
            schema.Attribute("name", types.String(), description="What the user sees.", required=True),
            schema.Attribute("value", types.String(), description="The value it stands for.", required=True),
            _optional("description", types.String(), "More about this option."),
        ])
        validation = schema.Block(attributes=[
            _optional("min", types.Number(), "Smallest allowed number (inclusive)."),
            _optional("max", types.Number(), "Largest allowed number (inclusive)."),
            _optional("regex", types.String(), "A string value must contain a match."),
            _optional("error", types.String(), "Shown when the value breaks the rule; may use {name}, {value}, "
                                               "{min} and {max}."),
        ])
        return schema.Schema(
            version=0,
            description="A value the user chooses for the workspace.",
            attributes=[
                schema.Attribute("name", types.String(), description="The parameter's name (its key).",
                                 required=True),
                _optional("display_name", types.String(), "The name shown to users."),
                _optional("description", types.String(), "Help text for users (Markdown)."),
                _optional("type", types.String(), f"One of {', '.join(TYPES)}; default string.", computed=True),
                _optional("default", types.String(),
                          "The value when none is given; without one, every build must give a value."),
                _optional("mutable", types.Bool(), "Whether the value may change after the workspace is created; "
                                                   "default false.", computed=True),
                _optional("icon", types.String(), "An icon URL or path."),
                _optional("order", types.Number(), "Where the parameter is shown among the others."),
                schema.Attribute("value", types.String(), description="The value for this build.", computed=True),
                schema.Attribute("id", types.String(), description="A stable id for this parameter in this "
                                                                   "workspace.", computed=True),
            ],
            block_types=[ListBlock("option", option), SingleBlock("validation", validation)],
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        if diags.has_errors() or not is_known(config):
            return  # values that come from elsewhere are checked when the data source is read
        try:
            check_definition(definition(config))
        except ParameterError as err:
            diags.add_error(err.summary, err.detail)

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        parameter = definition(config)
        try:
            check_definition(parameter)
            workspace = env.workspace(os.environ)
            value = resolve_value(parameter, env.parameter_value(os.environ, parameter.name),
                                  is_build=workspace.is_build)
        except ParameterError as err:
            ctx.diagnostics.add_error(err.summary, err.detail)
            return None
        except env.EnvError as err:
            ctx.diagnostics.add_error("Cannot read the workspace from the environment", str(err))
            return None
        return {**config, "type": parameter.type, "mutable": bool(config.get("mutable")), "value": value,
                "id": str(uuid.uuid5(_IDS, f"{workspace.id}/{parameter.name}"))}
