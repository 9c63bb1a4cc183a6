"""argon2id password hashes, and the rules a new password must meet."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.errors import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 256  # argon2 would hash megabytes happily; a cap stops a cheap CPU denial of service
_HASHER = PasswordHasher()  # argon2id with the library's RFC 9106 "low memory" defaults
# Verified when the username is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = _HASHER.hash("appliance-timing-equaliser")


def hash_password(password: str) -> str:
    return str(_HASHER.hash(password))


def is_password_correct(hashed: str | None, password: str) -> bool:
    try:
        return bool(_HASHER.verify(hashed or _DUMMY_HASH, password)) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str, *, username: str, email: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"Password is too short: use at least {MIN_LENGTH} characters.",
                           field="password")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"Password is too long: use at most {MAX_LENGTH} characters.",
                           field="password")
    lowered = password.lower()
    if username.lower() in lowered or lowered == email.lower():
        raise InvalidInput("Password is too easy to guess: it must not contain the username.",
                           field="password")
    if len(set(password)) < 4:
        raise InvalidInput("Password is too easy to guess: use at least 4 different characters.",
                           field="password")
