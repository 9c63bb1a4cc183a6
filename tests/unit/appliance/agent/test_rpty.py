"""The reconnecting PTY's pure parts: the scrollback ring and the subsystem name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.agent.rpty import Scrollback, reconnect_id

pytestmark = pytest.mark.unit


@given(st.lists(st.binary(max_size=300), max_size=40), st.integers(min_value=1, max_value=512))
def test_the_scrollback_keeps_exactly_the_last_bytes_written(chunks: list[bytes], limit: int) -> None:
    ring = Scrollback(limit)
    for chunk in chunks:
        ring.append(chunk)
    assert ring.contents() == b"".join(chunks)[-limit:]


def test_a_write_larger_than_the_ring_keeps_its_tail() -> None:
    ring = Scrollback(4)
    ring.append(b"ab")
    ring.append(b"0123456789")
    assert ring.contents() == b"6789"


@pytest.mark.parametrize(("subsystem", "expected"), [
    ("appliance-rpty:3f0c8a0e-52d4-4f43-9f2a-1c2b3d4e5f60", "3f0c8a0e-52d4-4f43-9f2a-1c2b3d4e5f60"),
    ("appliance-rpty:tab1", "tab1"),
    ("appliance-rpty:", None),
    ("appliance-rpty:../etc", None),
    ("appliance-rpty:" + "a" * 65, None),
    ("appliance-echo", None),
])
def test_the_reconnect_id_is_a_short_token_after_the_prefix(subsystem: str, expected: str | None) -> None:
    assert reconnect_id(subsystem) == expected
