"""An agent's connection status, branch by branch as Coder computes it, and the hint beside it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from appliance.sdk.agents import ConnectionStatus
from appliance.workspaces.agent_status import INACTIVE_AFTER, ConnectionTimes, connection_status, troubleshooting_hint

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def _times(*, created: float = 10, timeout: int = 120, first: float | None = None, last: float | None = None,
           gone: float | None = None) -> ConnectionTimes:
    return ConnectionTimes(_ago(created), timeout, None if first is None else _ago(first),
                           None if last is None else _ago(last), None if gone is None else _ago(gone))


@pytest.mark.parametrize(("times", "expected"), [
    pytest.param(_times(created=10), "connecting", id="never connected, within the timeout: connecting"),
    pytest.param(_times(created=121), "timeout", id="never connected, past the template's timeout: timeout"),
    pytest.param(_times(created=10_000, timeout=0), "connecting", id="a timeout of 0 waits forever"),
    pytest.param(_times(created=120), "connecting", id="exactly at the timeout is still connecting"),
    pytest.param(_times(first=50, last=5), "connected", id="connected and recently seen: connected"),
    pytest.param(_times(first=50, last=5, gone=30), "connected", id="a disconnect before the last connection is past"),
    pytest.param(_times(first=50, last=30, gone=5), "disconnected", id="disconnected after the last connection"),
    pytest.param(_times(first=50, last=20, gone=20), "disconnected", id="a disconnect at the same instant counts"),
    pytest.param(_times(first=500, last=INACTIVE_AFTER.total_seconds() + 1), "disconnected",
                 id="silent for longer than the inactivity limit: disconnected"),
    pytest.param(_times(created=10_000, first=500, last=5), "connected",
                 id="a late first connection is no timeout once it came"),
])
def test_status(times: ConnectionTimes, expected: ConnectionStatus) -> None:
    assert connection_status(times, NOW) == expected


@pytest.mark.parametrize("status", ["timeout", "disconnected"])
def test_a_troubled_agent_gets_a_hint_naming_what_to_check(status: ConnectionStatus) -> None:
    hint = troubleshooting_hint(status)
    assert "container" in hint and "/derp" in hint
    assert troubleshooting_hint(status, "https://wiki.example/agents").endswith("https://wiki.example/agents")


def test_the_timeout_hint_names_the_agent_binary_download() -> None:
    assert "/bin/appliance-agent-linux-amd64" in troubleshooting_hint("timeout")


@pytest.mark.parametrize("status", ["connecting", "connected"])
def test_a_healthy_agent_gets_no_hint(status: ConnectionStatus) -> None:
    assert troubleshooting_hint(status, "https://wiki.example/agents") == ""
