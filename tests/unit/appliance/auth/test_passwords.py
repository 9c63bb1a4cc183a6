"""Password hashing and the rules for new passwords."""

from __future__ import annotations

import pytest

from appliance.auth.passwords import check_password_policy, hash_password, is_password_correct
from appliance.errors import InvalidInput


def test_hash_is_argon2id_and_verifies_only_the_right_password() -> None:
    hashed = hash_password("correct-horse-battery")
    assert hashed.startswith("$argon2id$")
    assert "correct-horse-battery" not in hashed
    assert is_password_correct(hashed, "correct-horse-battery")
    assert not is_password_correct(hashed, "correct-horse-batterY")


def test_an_unknown_user_never_verifies() -> None:
    assert not is_password_correct(None, "appliance-timing-equaliser")


@pytest.mark.parametrize(("password", "why"), [
    ("short", "too short"), ("x" * 300, "too long"), ("alice-secret-1", "must not contain the username"),
    ("aaaaabbbbb", "4 different characters"),
])
def test_weak_passwords_are_refused_with_the_reason(password: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why) as caught:
        check_password_policy(password, username="alice", email="alice@example.org")
    assert caught.value.field == "password"


def test_a_reasonable_password_passes() -> None:
    check_password_policy("correct-horse-battery", username="alice", email="alice@example.org")
