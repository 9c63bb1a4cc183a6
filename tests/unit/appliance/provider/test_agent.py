"""appliance_agent's plan-time checks: timeouts and metadata blocks as Coder's coder_agent takes them."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.provider.agent import metadata_problems

pytestmark = pytest.mark.unit


def _block(**fields: Any) -> dict[str, Any]:
    return {"key": "load", "display_name": "Load", "script": "uptime", "interval": 5, "timeout": 1, **fields}


@pytest.mark.parametrize(("blocks", "problem"), [
    pytest.param([_block(key="has space")], "key 'has space' must be", id="a key with a space"),
    pytest.param([_block(key="")], "key '' must be", id="an empty key"),
    pytest.param([_block(interval=0)], "interval of 'load' must be at least 1", id="an interval of 0"),
    pytest.param([_block(timeout=-1)], "timeout of 'load' must not be negative", id="a negative timeout"),
    pytest.param([_block(), _block()], "repeated: load", id="a repeated key"),
])
def test_bad_metadata_blocks_are_refused_at_plan_time(blocks: list[dict[str, Any]], problem: str) -> None:
    assert any(problem in found for found in metadata_problems(blocks))


def test_good_and_unknown_blocks_pass() -> None:
    assert metadata_problems([_block(), _block(key="disk.root", interval=60, timeout=None)]) == []
    assert metadata_problems(None) == []
