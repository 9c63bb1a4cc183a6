"""What a state file holds that logs must never show: agent tokens, sensitive attributes, sensitive outputs."""

from __future__ import annotations

import json

import pytest

from appliance.provisioner.extract import sensitive_values

pytestmark = pytest.mark.unit

# The shape terraform 1.11 writes: sensitive paths per instance; a dynamic value (terraform_data's input)
# stored as {"value", "type"}; outputs flagged sensitive.
STATE = {
    "version": 4,
    "resources": [
        {"mode": "managed", "type": "appliance_agent", "name": "main", "instances": [
            {"attributes": {"id": "agent-id-1", "token": "agent-token-1"},
             "sensitive_attributes": [[{"type": "get_attr", "value": "token"}]]}]},
        {"mode": "managed", "type": "terraform_data", "name": "x", "instances": [
            {"attributes": {"input": {"value": {"a": "secret-value-1", "b": "plain-value", "l": ["secret-in-list"]},
                                      "type": ["object", {}]}},
             "sensitive_attributes": [
                 [{"type": "get_attr", "value": "input"}, {"type": "get_attr", "value": "l"},
                  {"type": "index", "value": {"value": 0, "type": "number"}}],
                 [{"type": "get_attr", "value": "input"}, {"type": "get_attr", "value": "a"}],
                 [{"type": "get_attr", "value": "missing"}]]}]},
    ],
    "outputs": {"o": {"value": "secret-output-1", "type": "string", "sensitive": True},
                "p": {"value": "public-output", "type": "string"}},
}


def test_sensitive_values_are_tokens_sensitive_attributes_and_sensitive_outputs() -> None:
    found = set(sensitive_values(json.dumps(STATE).encode()))
    assert found == {"agent-token-1", "secret-value-1", "secret-in-list", "secret-output-1"}


@pytest.mark.parametrize("state", [b"", b"  ", b"{not json", b"{}"], ids=["empty", "blank", "not JSON", "no resources"])
def test_a_state_without_secrets_gives_none(state: bytes) -> None:
    assert sensitive_values(state) == []
