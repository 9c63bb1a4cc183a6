"""The shared input rules: one-line and multi-line text, bounded numbers, what no JSON body may hold."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from appliance.sdk.base import MAX_BIGINT, BigCount, Line, Text, unsafe_character, unstorable_value, whole_number


class _Form(BaseModel):
    name: Line = ""
    about: Text = ""
    offset: BigCount = 0


@pytest.mark.parametrize("value", ["\x00", "name\n", "a\rb", "\t", "\x1b[31m", "\x7f", "\x85", "\ud800"])
def test_a_one_line_field_refuses_every_control_character(value: str) -> None:
    with pytest.raises(ValidationError, match="control characters"):
        _Form(name=value)


def test_free_text_keeps_line_breaks_and_tabs_but_no_other_control_character() -> None:
    assert _Form(about="line one\r\n\tline two").about == "line one\r\n\tline two"
    for value in ("\x00", "bell\x07", "\x1b[2J"):
        with pytest.raises(ValidationError, match="control characters"):
            _Form(about=value)


@given(st.text(st.characters(exclude_categories=["Cc", "Cs"])))
def test_text_without_control_characters_is_always_accepted(value: str) -> None:
    assert unsafe_character(value) is None and _Form(name=value, about=value).name == value


@pytest.mark.parametrize(("offset", "is_valid"), [(0, True), (MAX_BIGINT, True), (MAX_BIGINT + 1, False), (-1, False),
                                                  ("99999999999999999999", False)])
def test_an_offset_fits_a_bigint(offset: Any, is_valid: bool) -> None:
    if is_valid:
        assert _Form(offset=offset).offset == offset
    else:
        with pytest.raises(ValidationError, match="offset"):
            _Form(offset=offset)


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), ("42", 42), (str(MAX_BIGINT), MAX_BIGINT),
                                               (str(MAX_BIGINT + 1), None), ("\u00b2", None), ("\u0661", None),
                                               ("-1", None), ("", None), ("1 ", None), ("0x10", None)])
def test_a_whole_number_is_ascii_digits_within_the_bound(raw: str, expected: int | None) -> None:
    assert whole_number(raw) == expected


@pytest.mark.parametrize(("document", "field"), [
    ({"username": "a\x00b"}, "username"),
    ({"tags": {"k\x00": "v"}}, "tags.k\x00"),
    ({"logs": [["plan", "info", "fine"], ["plan", "info", "\ud800"]]}, "logs.1.2"),
    ({"lifetime": 2**63}, "lifetime"),
    ({"lifetime": -(2**63)}, "lifetime"),
    ({"ratio": math.nan}, "ratio"),
    ({"ratio": math.inf}, "ratio"),
])
def test_what_no_body_may_hold_is_found_with_its_field(document: dict[str, Any], field: str) -> None:
    for is_strict_text in (True, False):
        found = unstorable_value(document, is_strict_text=is_strict_text)
        assert found is not None and found[0] == field


def test_a_daemons_terraform_output_may_hold_control_characters_a_persons_body_may_not() -> None:
    document = {"logs": [["apply", "info", "progress\x08\x08 done\x1b[0m"]]}
    assert unstorable_value(document, is_strict_text=False) is None
    assert unstorable_value(document, is_strict_text=True) == ("logs.0.2", "holds the control character U+0008")
    assert unstorable_value({"description": "two\nlines\twith a tab", "n": MAX_BIGINT, "ok": True, "x": 0.5},
                            is_strict_text=True) is None
