"""Detached GPG signatures over manifest.json: make them (build side), count trusted ones (offline side).

GPG runs with a throwaway home directory for every check, holding only the trusted keyring:
no user keyring, agent state or network key lookup can influence the result.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gnupg

from bundles.errors import BundleError, BundleRejected

_ARMORED = re.compile(rb"-----BEGIN PGP SIGNATURE-----\r?\n.*?-----END PGP SIGNATURE-----\r?\n?", re.DOTALL)
MAX_SIGNATURES = 16


@dataclass(frozen=True)
class Signer:
    fingerprint: str      # the primary key's fingerprint: what the threshold counts
    user_id: str
    signed_at: datetime

    def to_json(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "user_id": self.user_id,
                "signed_at": self.signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


@contextmanager
def gpg_home(keyring: bytes | None = None) -> Iterator[gnupg.GPG]:
    """A GPG with its own temporary home, holding only `keyring`; removed afterwards."""
    home = tempfile.mkdtemp(prefix="appliance-gpg-")
    try:
        gpg = gnupg.GPG(gnupghome=home, options=["--no-auto-key-locate", "--no-auto-key-retrieve"])
        if keyring is not None:
            gpg.import_keys(keyring)
        yield gpg
    finally:
        shutil.rmtree(home, ignore_errors=True)


def split_signatures(data: bytes) -> list[bytes]:
    blocks = [m.group(0) for m in _ARMORED.finditer(data)]
    leftover = _ARMORED.sub(b"", data).strip()
    if leftover:
        raise BundleRejected("signature-format", "manifest.json.sig holds data that is not an ASCII-armored "
                             "PGP signature.")
    if len(blocks) > MAX_SIGNATURES:
        raise BundleRejected("signature-format", f"more than {MAX_SIGNATURES} signatures.")
    return blocks


def trusted_fingerprints(keyring: bytes) -> set[str]:
    with gpg_home(keyring) as gpg:
        return {key["fingerprint"] for key in gpg.list_keys()}


def check_signatures(manifest: bytes, signatures: bytes, keyring: bytes, threshold: int) -> list[Signer]:
    """Return the distinct trusted signers; fail closed unless at least `threshold` signed."""
    if threshold < 1:
        raise BundleError("The signature threshold must be at least 1.", "Signature checks cannot be turned off.")
    blocks = split_signatures(signatures)
    if not blocks:
        raise BundleRejected("unsigned", "manifest.json.sig holds no signature.",
                             "Sign the bundle with 'appliance-bundle sign' before shipping it.")
    signers: dict[str, Signer] = {}
    problems: list[str] = []
    with gpg_home(keyring) as gpg:
        trusted = {key["fingerprint"] for key in gpg.list_keys()}
        if not trusted:
            raise BundleError("The trusted keyring holds no public keys.",
                              "Pass the release public key file with --keyring.")
        for block in blocks:
            with tempfile.NamedTemporaryFile(suffix=".asc") as sig_file:
                sig_file.write(block)
                sig_file.flush()
                result = gpg.verify_data(sig_file.name, manifest)
            primary = result.pubkey_fingerprint or result.fingerprint
            if not result.valid or primary not in trusted:
                problems.append(_describe_failure(result, trusted))
                continue
            signed_at = datetime.fromtimestamp(int(result.sig_timestamp or 0), UTC)
            signers[primary] = Signer(primary, result.username or "", signed_at)
    if len(signers) < threshold:
        rule = "threshold" if signers else ("untrusted-signer" if all("untrusted" in p for p in problems)
                                            else "bad-signature")
        detail = "; ".join(problems) or "no valid signature"
        raise BundleRejected(rule, f"{len(signers)} of the required {threshold} distinct trusted keys signed "
                             f"manifest.json ({detail}).")
    return sorted(signers.values(), key=lambda s: s.fingerprint)


def _describe_failure(result: gnupg.Verify, trusted: set[str]) -> str:
    key = result.key_id or "unknown key"
    if result.status == "no public key" or (result.valid and result.pubkey_fingerprint not in trusted):
        return f"signature by untrusted key {key}"
    if result.status == "signature bad":
        return f"signature by {key} does not match manifest.json"
    if result.key_status:
        return f"signature by {key}: key {result.key_status}"
    return f"signature by {key}: {result.status or 'unreadable'}"


# -- build side --------------------------------------------------------------------------------


def sign_manifest(manifest: bytes, fingerprint: str, gnupghome: Path | None = None,
                  passphrase: str | None = None) -> bytes:
    """One ASCII-armored detached signature over manifest, made with the given key."""
    gpg = gnupg.GPG(gnupghome=str(gnupghome) if gnupghome else None)
    result = gpg.sign(manifest, keyid=fingerprint, detach=True, passphrase=passphrase,
                      extra_args=["--pinentry-mode", "loopback"] if passphrase else None)
    if not result.data:
        raise BundleError(f"GPG could not sign with key {fingerprint}: {result.status or result.stderr[-200:]}.",
                          "Check that the secret key is in the keyring (gpg --list-secret-keys) and unlocked.")
    return bytes(result.data)


def generate_key(gnupghome: Path, name: str, email: str, expire: str = "2y") -> str:
    """An ed25519 signing key without a passphrase, for tests and trial builds only."""
    gnupghome.mkdir(parents=True, exist_ok=True, mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(gnupghome))
    spec = gpg.gen_key_input(key_type="EDDSA", key_curve="ed25519", key_usage="sign", name_real=name,
                             name_email=email, expire_date=expire, no_protection=True)
    key = gpg.gen_key(spec)
    if not key.fingerprint:
        raise BundleError(f"GPG could not generate a key: {key.stderr[-300:]}", "Check that gpg 2.2+ is installed.")
    return str(key.fingerprint)


def export_public_key(gnupghome: Path | None, fingerprint: str) -> bytes:
    gpg = gnupg.GPG(gnupghome=str(gnupghome) if gnupghome else None)
    data = gpg.export_keys(fingerprint, armor=True)
    if not data:
        raise BundleError(f"No public key {fingerprint} in that keyring.", "List keys with 'gpg --list-keys'.")
    return str(data).encode()
