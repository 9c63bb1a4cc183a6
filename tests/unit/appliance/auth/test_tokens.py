"""The token wire format: what clients hold, and what the database may store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.auth.tokens import (
    ID_LENGTH,
    SECRET_LENGTH,
    hash_secret,
    is_secret_matching,
    new_token,
    parse_token,
)


def test_new_tokens_have_coder_shape_and_are_unique() -> None:
    tokens = {str(new_token()) for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        key_id, secret = token.split("-")
        assert (len(key_id), len(secret)) == (ID_LENGTH, SECRET_LENGTH)


@given(st.builds(lambda: new_token()))
def test_a_token_parses_back_to_its_parts(token: object) -> None:
    assert parse_token(str(token)) == token


@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes_the_parser(text: str) -> None:
    parts = parse_token(text)
    assert parts is None or str(parts) == text.strip()


@pytest.mark.parametrize("text", ["", "abc", "a" * 10 + "b" * 22, "a" * 9 + "-" + "b" * 23,
                                  "aaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbb!", "ééééééééé-" + "b" * 22])
def test_malformed_tokens_are_rejected(text: str) -> None:
    assert parse_token(text) is None


def test_only_the_matching_secret_verifies_and_the_hash_is_not_the_secret() -> None:
    token = new_token()
    stored = hash_secret(token.secret)
    assert token.secret.encode() not in stored
    assert is_secret_matching(token, stored)
    other = new_token()
    assert not is_secret_matching(other, stored)
