"""A provider for tests: data source <type>_greeting {name} -> {text}; resource <type>_note {text} -> {id}.

The provider type comes from the executable's name (terraform-provider-<type>_v<version>), so
one script serves as several distinct providers.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path
from typing import Any

from tf import schema, types
from tf.iface import Config, CreateContext, DeleteContext, ReadContext, ReadDataContext, State, UpdateContext
from tf.provider import DataSource, Provider, Resource
from tf.runner import run_provider
from tf.utils import Diagnostics

_NAME = re.match(r"terraform-provider-(?P<type>[a-z0-9-]+)_v(?P<version>[^_]+)", Path(sys.argv[0]).name)
TYPE = _NAME["type"] if _NAME else "greeting"
VERSION = _NAME["version"] if _NAME else "0.0.0"


class Greeting(DataSource):
    @classmethod
    def get_name(cls) -> str:
        return "greeting"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(attributes=[schema.Attribute("name", types.String(), required=True),
                                         schema.Attribute("text", types.String(), computed=True)])

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def read(self, ctx: ReadDataContext, config: Config) -> State:
        return {"name": config["name"], "text": f"hello {config['name']} from {TYPE} {VERSION}"}


class Note(Resource):
    @classmethod
    def get_name(cls) -> str:
        return "note"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(attributes=[schema.Attribute("text", types.String(), required=True),
                                         schema.Attribute("id", types.String(), computed=True)])

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def create(self, ctx: CreateContext, planned: State) -> State:
        return {**planned, "id": str(uuid.uuid4())}

    def read(self, ctx: ReadContext, current: State) -> State:
        return current

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State:
        return {**planned, "id": current["id"]}

    def delete(self, ctx: DeleteContext, current: State) -> None:
        return None


class GreetingProvider(Provider):
    def full_name(self) -> str:
        return f"example.test/test/{TYPE}"

    def get_model_prefix(self) -> str:
        return f"{TYPE}_"

    def get_provider_schema(self, diags: Diagnostics) -> schema.Schema:
        return schema.Schema(attributes=[])

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        return None

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        return None

    def get_data_sources(self) -> list[type[DataSource]]:
        return [Greeting]

    def get_resources(self) -> list[type[Resource]]:
        return [Note]


if __name__ == "__main__":
    run_provider(GreetingProvider())
