"""Configuration values as the tf framework hands them over, where parts may still be unknown."""

from __future__ import annotations

from typing import Any

from tf.types import Unknown


def is_known(value: Any) -> bool:
    """False while any part of a value is unknown (it comes from something not yet created or read)."""
    if value is Unknown:
        return False
    if isinstance(value, dict):
        return all(is_known(v) for v in value.values())
    if isinstance(value, list):
        return all(is_known(v) for v in value)
    return True
