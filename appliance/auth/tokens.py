"""The API key wire format: "<10-char id>-<22-char secret>", of which only sha256(secret) is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

ID_LENGTH = 10
SECRET_LENGTH = 22
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class TokenParts:
    key_id: str
    secret: str

    def __str__(self) -> str:
        return f"{self.key_id}-{self.secret}"

    @property
    def hashed_secret(self) -> bytes:
        return hash_secret(self.secret)


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_token() -> TokenParts:
    return TokenParts(_random(ID_LENGTH), _random(SECRET_LENGTH))


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_token(text: str) -> TokenParts | None:
    """Split a presented token; None when it cannot be one of ours."""
    key_id, sep, secret = text.strip().partition("-")
    if not sep or len(key_id) != ID_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    if not (key_id.isascii() and key_id.isalnum() and secret.isascii() and secret.isalnum()):
        return None
    return TokenParts(key_id, secret)


def is_secret_matching(parts: TokenParts, stored_hash: bytes) -> bool:
    return hmac.compare_digest(parts.hashed_secret, bytes(stored_hash))
