"""How a secret is hidden in job logs: one rule for the daemon (what it knows) and the control plane (the rest)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
# Shorter values would hide ordinary words ("true", a port): no secret the appliance makes is this short.
MIN_SECRET_LENGTH = 8


def usable(secrets: Iterable[str]) -> list[str]:
    """The values worth hiding, longest first, so a secret that contains another is hidden whole."""
    return sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by REDACTED."""
    for secret in usable(secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_json(value: Any, secrets: list[str]) -> Any:
    """Every string inside a JSON value (a plan, a parameter list) redacted."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_json(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact_json(v, secrets) for k, v in value.items()}
    return value
