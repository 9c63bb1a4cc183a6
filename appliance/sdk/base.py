"""What every wire model shares: strict bodies and queries, safe text, bounded numbers, timestamps."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

# PostgreSQL's bigint: every id, count and offset the API takes must fit one.
MAX_BIGINT = 2**63 - 1
# C0 and C1 control characters (NUL among them) and DEL; lone surrogates cannot even be encoded.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Multi-line text (a description, a commit message) may also hold tabs and line breaks.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# What no PostgreSQL text or jsonb value can hold at all, whoever sends it.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
TEXT_HINT = "Remove control characters (NUL, escape, line breaks in a one-line field) and send it again."


def unsafe_character(value: str, *, multiline: bool = False) -> str | None:
    """The first character `value` may not hold, written as U+XXXX, or None when it is safe."""
    found = (_CONTROL_IN_TEXT if multiline else _CONTROL).search(value)
    return f"U+{ord(found.group()):04X}" if found else None


def whole_number(raw: str, maximum: int = MAX_BIGINT) -> int | None:
    """`raw` as a number from 0 to `maximum`, or None; str.isdigit() alone passes '\u00b2', which int() refuses."""
    if raw.isascii() and raw.isdigit() and int(raw) <= maximum:
        return int(raw)
    return None


def _line(value: str) -> str:
    if (bad := unsafe_character(value)) is not None:
        raise ValueError(f"must be one line without control characters, found {bad}")
    return value


def _text(value: str) -> str:
    if (bad := unsafe_character(value, multiline=True)) is not None:
        raise ValueError(f"must not hold control characters, found {bad}")
    return value


# A one-line string (a name, a username, a search): no control character, not even a trailing newline.
Line = Annotated[str, AfterValidator(_line)]
# Free text that may span lines (a description): tabs and line breaks, no other control character.
Text = Annotated[str, AfterValidator(_text)]
# An offset or id that PostgreSQL's bigint can hold.
BigCount = Annotated[int, Field(ge=0, le=MAX_BIGINT)]


def _leaves(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every key and scalar in a parsed JSON document, with its dotted path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{where}.{key}".lstrip("."), key
            yield from _leaves(item, f"{where}.{key}".lstrip("."))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{where}.{index}".lstrip("."))
    else:
        yield where, value


def unstorable_value(document: Any, *, is_strict_text: bool) -> tuple[str, str] | None:
    """(field, why) for the first value of a JSON body no field may hold, or None.

    Every body: no NUL or lone surrogate (PostgreSQL stores neither), no integer past bigint, no
    NaN or infinity. `is_strict_text` (people's requests, not a daemon's terraform output): no
    control character besides tabs and line breaks either; one-line fields refuse those too.
    """
    for where, value in _leaves(document, ""):
        if isinstance(value, str):
            rule = _CONTROL_IN_TEXT if is_strict_text else _UNSTORABLE
            if found := rule.search(value):
                return where or "body", f"holds the control character U+{ord(found.group()):04X}"
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_BIGINT:
            return where or "body", f"is a number outside -{MAX_BIGINT}..{MAX_BIGINT}"
        elif isinstance(value, float) and not math.isfinite(value):
            return where or "body", "is not a finite number"
    return None


class Body(BaseModel):
    """A request body: unknown fields are refused so a typo is reported, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


# isoformat() keeps the "+00:00" offset the API has always written (pydantic alone would write "Z").
Timestamp = Annotated[datetime, PlainSerializer(lambda moment: moment.isoformat(), return_type=str, when_used="json")]
