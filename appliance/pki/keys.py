"""Private keys: generate by kind, write encrypted or plain PEM, load with clear errors."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from appliance.errors import OperatorError

PrivateKey = CertificateIssuerPrivateKeyTypes
KEY_TYPES = ("ecdsa-p384", "ecdsa-p256", "rsa-4096", "rsa-3072", "rsa-2048")


class PkiError(OperatorError):
    """The internal CA refused or failed an operation."""


def generate_key(kind: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind.startswith("rsa-") and kind in KEY_TYPES:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa-")))
    raise PkiError(f"Unknown key type {kind!r}.", f"Choose one of: {', '.join(KEY_TYPES)}.")


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise PkiError(f"Key file {path} is missing.",
                       "If the root key was exported, bring it back with 'appliance pki import-root'.") from err
    is_encrypted = b"ENCRYPTED" in data
    if is_encrypted and not passphrase:
        raise PkiError(f"Key file {path} is encrypted and no passphrase was given.",
                       "Give it with --passphrase-file, APPLIANCE_PKI_PASSPHRASE, or at the prompt.")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if is_encrypted else None)
    except ValueError as err:
        if is_encrypted:
            # A wrong passphrase usually fails the padding check ("incorrect password"), but about one
            # time in 256 the padding passes and the garbage fails to parse instead: the same mistake.
            precise = "incorrect password" in str(err).lower()
            suffix = "." if precise else ", or the key file is corrupt."
            raise PkiError(f"Wrong passphrase for {path}{suffix}",
                           "Check the passphrase; if it is right, restore the key from a backup.") from err
        reason = str(err).split(".")[0]
        raise PkiError(f"Key file {path} is corrupt or not a PEM private key ({reason}).",
                       "Restore it from a backup; the CA cannot sign without it.") from err
    except TypeError as err:
        raise PkiError(f"Key file {path} could not be read: {err}.", "Restore it from a backup.") from err
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PkiError(f"Key file {path} holds an unsupported key type.", "Use an ECDSA or RSA key.")
    return key
