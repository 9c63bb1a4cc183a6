"""config-ssh's marked block: rewritten whole, idempotent, and nothing outside it ever changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.cli.ssh_config import END, START, block, with_block, workspace_of
from appliance.errors import OperatorError

# What a user's own config may hold: any lines except our markers.
user_lines = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
                      .filter(lambda s: s not in (START, END)), max_size=8)


@given(before=user_lines, after=user_lines, names=st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
                                                            max_size=4, unique=True))
def test_writing_twice_gives_the_same_file_and_keeps_the_users_lines(before: list[str], after: list[str],
                                                                      names: list[str]) -> None:
    original = "\n".join([*before, *after]) + "\n" if before or after else ""
    once = with_block(original, block(names))
    assert with_block(once, block(names)) == once
    assert once.count(START) == 1 and once.count(END) == 1
    assert once.startswith(original.rstrip("\n"))
    for name in names:
        assert f"Host appliance.{name}\n" in once


def test_a_new_list_replaces_the_old_block_in_place() -> None:
    text = with_block("Host a\n", block(["one", "two"]))
    text += "Host z\n"
    updated = with_block(text, block(["two"]))
    assert "Host appliance.one" not in updated and "Host appliance.two" in updated
    assert updated.startswith("Host a\n") and updated.endswith("Host z\n")


@pytest.mark.parametrize("text", [f"{START}\n", f"{END}\n{START}\n", f"{START}\n{END}\n{START}\n{END}\n"],
                         ids=["a start without an end", "an end before the start", "two blocks"])
def test_a_broken_block_is_left_alone_with_a_hint(text: str) -> None:
    with pytest.raises(OperatorError, match="broken or repeated"):
        with_block(text, block([]))


@pytest.mark.parametrize(("host", "workspace"), [("appliance.box", "box"), ("box", "box")])
def test_the_host_alias_names_the_workspace(host: str, workspace: str) -> None:
    assert workspace_of(host) == workspace
