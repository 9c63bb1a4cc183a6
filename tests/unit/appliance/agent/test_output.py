"""A script's output as the control plane stores it: whole lines, no escape codes, bounded (agent/output.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.agent.output import LineSplitter, clean
from appliance.sdk.agents import MAX_LOG_LINE_CHARS, AgentLogLine
from appliance.sdk.base import unsafe_character


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[1;32mok\x1b[0m", "ok"),
    ("downloading 10%\rdownloading 100%", "downloading 100%"),
    ("tab\tstays", "tab\tstays"),
    ("bell\x07 and NUL\x00 go", "bell and NUL go"),
    ("\x1b]0;title\x07prompt", "prompt"),
], ids=["colours are removed", "a redrawn line shows its last state", "tabs stay",
        "control characters go", "a window title sequence goes"])
def test_clean_leaves_what_a_terminal_would_show(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_lines_split_across_chunks_come_out_whole_and_in_order() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\nthree") == ["two"]
    assert splitter.close() == ["three"]
    assert splitter.close() == []


def test_a_line_longer_than_the_limit_is_cut_not_lost() -> None:
    splitter = LineSplitter(limit=4)
    assert splitter.feed(b"abcdefghij\n") == ["abcd", "efgh", "ij"]


def test_a_multibyte_character_split_between_chunks_survives() -> None:
    splitter = LineSplitter()
    encoded = "héllo\n".encode()
    assert splitter.feed(encoded[:2]) == [] and splitter.feed(encoded[2:]) == ["héllo"]


@given(st.binary(max_size=3000))
def test_every_line_is_one_the_api_accepts(data: bytes) -> None:
    splitter = LineSplitter()
    lines = splitter.feed(data) + splitter.close()
    for line in lines:
        assert len(line) <= MAX_LOG_LINE_CHARS and unsafe_character(line, multiline=True) is None
        AgentLogLine.model_validate({"created_at": "2026-01-01T00:00:00+00:00", "output": line})
