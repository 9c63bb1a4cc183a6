"""The relay's paths and region id, apart from the agent models so the relay process never loads pydantic."""

from __future__ import annotations

RELAY_PATH = "/derp"
RELAY_LATENCY_PATH = "/derp/latency-check"
REGION_ID = 999  # Coder's and Headscale's embedded region id, so `ping` output reads the same
