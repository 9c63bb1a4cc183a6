"""An agent's connection status as Coder computes it, and what to check when it is not connected."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.sdk.agents import AGENT_BINARY_PATH, RELAY_PATH, ConnectionStatus

# The relay refreshes last_connected_at while the agent stays connected; a stamp older than this
# means the connection died without the relay writing disconnected_at (a killed relay, a lost host).
INACTIVE_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class ConnectionTimes:
    created_at: datetime
    connection_timeout_seconds: int
    first_connected_at: datetime | None
    last_connected_at: datetime | None
    disconnected_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ConnectionTimes:
        """From a workspace_agents row."""
        return cls(row["created_at"], row["connection_timeout_seconds"], row["first_connected_at"],
                   row["last_connected_at"], row["disconnected_at"])


def connection_status(times: ConnectionTimes, now: datetime) -> ConnectionStatus:
    """connecting until the first connection (timeout once the template's timeout passed without one);
    disconnected once disconnected at or after the last connection, or silent for INACTIVE_AFTER."""
    if times.first_connected_at is None:
        timeout = times.connection_timeout_seconds
        if timeout > 0 and now - times.created_at > timedelta(seconds=timeout):
            return "timeout"
        return "connecting"
    last = times.last_connected_at
    # Coder compares "not before", not "after": equal stamps (a connection that dropped at once) are a disconnect.
    if last is None or (times.disconnected_at is not None and times.disconnected_at >= last):
        return "disconnected"
    if now - last > INACTIVE_AFTER:
        return "disconnected"
    return "connected"


def troubleshooting_hint(status: ConnectionStatus, troubleshooting_url: str = "") -> str:
    """What to check when the agent is not connected; empty while it is connecting or connected."""
    if status == "timeout":
        hint = ("The agent has not connected since the workspace started. Check that the workspace's container "
                "is running, that its init script downloaded the agent binary from the access URL "
                f"({AGENT_BINARY_PATH}: the container must reach the appliance and trust its CA), and that the "
                f"relay path {RELAY_PATH} is reachable from inside the workspace.")
    elif status == "disconnected":
        hint = ("The agent was connected and lost its connection to the relay. Check that the workspace's "
                f"container is still running, that the agent process is alive in it, and that the relay at "
                f"{RELAY_PATH} is up (an agent reconnects on its own once it is).")
    else:
        return ""
    return f"{hint} The template's guide: {troubleshooting_url}" if troubleshooting_url else hint
