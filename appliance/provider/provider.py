"""The provider itself: its address, and the data sources and resources it serves."""

from __future__ import annotations

from typing import Any

from tf import schema
from tf.iface import Config, DataSource, Provider, Resource
from tf.utils import Diagnostics

from appliance.provider import SOURCE
from appliance.provider.agent import Agent
from appliance.provider.app import App
from appliance.provider.metadata import Metadata
from appliance.provider.parameter_data import ParameterData
from appliance.provider.podman import PodmanContainer, PodmanVolume
from appliance.provider.workspace import OwnerData, WorkspaceData


class ApplianceProvider(Provider):  # type: ignore[misc]  # tf ships no type hints
    """provider "appliance" {}: no configuration; everything comes from the provisioner's environment."""

    def full_name(self) -> str:
        return SOURCE

    def get_model_prefix(self) -> str:
        return "appliance_"

    def get_provider_schema(self, diags: Diagnostics) -> Any:
        return schema.Schema(version=0, attributes=[])

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        return None

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        return None

    def get_data_sources(self) -> list[type[DataSource]]:
        return [WorkspaceData, OwnerData, ParameterData]

    def get_resources(self) -> list[type[Resource]]:
        return [Agent, App, Metadata, PodmanVolume, PodmanContainer]
