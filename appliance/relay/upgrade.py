"""Which upgrade a /derp request asks for, or the refusal it gets: one rule for both HTTP fronts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from appliance.relay import frames
from appliance.relay.limits import TokenBucket
from appliance.relay.server import Counters

PROBE_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}
Upgrade = Literal["derp", "websocket"]


@dataclass(frozen=True)
class Refusal:
    status: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)


def tokens(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def requested_upgrade(headers: Mapping[str, str], accept: TokenBucket, counters: Counters) -> Upgrade | Refusal:
    """`headers` looked up by lowercase name. The accept limit applies only to a well-formed upgrade."""
    upgrade = headers.get("upgrade", "").strip().lower()
    if upgrade not in ("derp", "websocket"):
        return Refusal(426, "DERP requires connection upgrade", {"Upgrade": "DERP", "Connection": "Upgrade"})
    if not accept.take_now():
        counters.refuse("accept_limit")
        return Refusal(429, "the relay is accepting too many connections; retry in a second", {"Retry-After": "1"})
    if upgrade == "websocket":
        if "derp" not in tokens(headers.get("sec-websocket-protocol", "")):
            return Refusal(400, "a DERP WebSocket needs Sec-WebSocket-Protocol: derp")
        return "websocket"
    if "upgrade" not in tokens(headers.get("connection", "")):
        return Refusal(426, "DERP requires connection upgrade (Connection: Upgrade)")
    return "derp"


def derp_switch_headers(server_public_hex: str) -> dict[str, str]:
    """The 101's headers for `Upgrade: DERP` (derper's)."""
    return {"Upgrade": "DERP", "Connection": "Upgrade", "Derp-Version": str(frames.PROTOCOL_VERSION),
            "Derp-Public-Key": server_public_hex}
