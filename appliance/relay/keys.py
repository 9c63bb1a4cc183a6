"""Node keys and the NaCl box DERP's handshake uses (Tailscale's types/key: SealTo / OpenFrom).

A sealed message is a random 24-byte nonce followed by crypto_box(X25519 + XSalsa20-Poly1305).
Opening ClientInfo with the server's private key and the client's claimed public key proves the
client holds that key's private half.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from appliance.relay.frames import KEY_LEN


class SealError(ValueError):
    """A sealed message that does not open: the wrong key, or bytes that were changed."""


@dataclass(frozen=True)
class NodeKey:
    """A Curve25519 key pair; `public` is the 32 bytes that name a peer on the relay."""

    private: PrivateKey

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(PrivateKey.generate())

    @property
    def public(self) -> bytes:
        return bytes(self.private.public_key)

    @property
    def public_hex(self) -> str:
        return self.public.hex()

    def seal_to(self, peer_public: bytes, message: bytes) -> bytes:
        """nonce(24) + box, readable only by the holder of `peer_public`'s private key."""
        return bytes(Box(self.private, PublicKey(_public(peer_public))).encrypt(message))

    def open_from(self, peer_public: bytes, sealed: bytes) -> bytes:
        try:
            return Box(self.private, PublicKey(_public(peer_public))).decrypt(sealed)
        except CryptoError as err:
            raise SealError("the box does not open with this key pair") from err


def _public(raw: bytes) -> bytes:
    if len(raw) != KEY_LEN:
        raise SealError(f"a public key is {KEY_LEN} bytes, got {len(raw)}")
    return raw


def parse_hex_key(text: str) -> bytes:
    """A 64-hex-character node key as bytes (what the API and the DERP map carry); ValueError otherwise."""
    raw = bytes.fromhex(text)
    if len(raw) != KEY_LEN:
        raise ValueError(f"a node key is {KEY_LEN} bytes ({2 * KEY_LEN} hex characters)")
    return raw
