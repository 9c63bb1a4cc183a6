"""What a build's state says about its agents: timeouts, troubleshooting URL and metadata blocks."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from appliance.provisioner.extract import build_resources

pytestmark = pytest.mark.unit


def _state(**attrs: Any) -> bytes:
    agent = {"id": "a1", "os": "linux", "arch": "amd64", "token": "secret-token", **attrs}
    return json.dumps({"resources": [{"mode": "managed", "type": "appliance_agent", "name": "main",
                                      "instances": [{"attributes": agent}]}]}).encode()


def test_timeouts_url_and_metadata_blocks_are_read() -> None:
    [resource] = build_resources(_state(
        connection_timeout=30, startup_script_timeout=90, troubleshooting_url="https://wiki.example/agent",
        metadata=[{"key": "load", "display_name": "Load", "script": "cat /proc/loadavg", "interval": 5,
                   "timeout": 2},
                  {"key": "disk", "display_name": None, "script": "df -h /", "interval": 60, "timeout": None}]))
    [agent] = resource.agents
    assert (agent.connection_timeout_seconds, agent.startup_script_timeout_seconds) == (30, 90)
    assert agent.troubleshooting_url == "https://wiki.example/agent"
    assert agent.metadata == [
        {"key": "load", "display_name": "Load", "script": "cat /proc/loadavg", "interval": 5, "timeout": 2},
        {"key": "disk", "display_name": "disk", "script": "df -h /", "interval": 60, "timeout": 60}]
    assert agent.hashed_token == hashlib.sha256(b"secret-token").digest()


def test_a_state_from_before_the_attributes_gets_coders_defaults() -> None:
    [agent] = build_resources(_state())[0].agents
    assert (agent.connection_timeout_seconds, agent.startup_script_timeout_seconds) == (120, 300)
    assert (agent.troubleshooting_url, agent.metadata) == ("", [])
