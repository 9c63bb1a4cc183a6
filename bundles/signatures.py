"""Detached GPG signatures over manifest.json: make them (build side), count trusted ones (offline side).

Checking uses `gpgv`, which every Debian host has (apt verifies its own repositories with it),
with the trusted keyring as its only keyring and a throwaway home directory: no user keyring,
agent state or network key lookup can influence the result. Making signatures (build side)
uses python-gnupg and the full gpg.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gnupg

from bundles.errors import BundleError, BundleRejected

_ARMORED = re.compile(rb"-----BEGIN PGP SIGNATURE-----\r?\n.*?-----END PGP SIGNATURE-----\r?\n?", re.DOTALL)
_ARMORED_KEY = re.compile(rb"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(?P<body>.*?)-----END PGP PUBLIC KEY BLOCK-----",
                          re.DOTALL)
MAX_SIGNATURES = 16


@dataclass(frozen=True)
class Signer:
    fingerprint: str      # the primary key's fingerprint: what the threshold counts
    user_id: str
    signed_at: datetime

    def to_json(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "user_id": self.user_id,
                "signed_at": self.signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


def dearmor(keyring: bytes) -> bytes:
    """Binary OpenPGP packets (what gpgv reads) from armored or binary public keys."""
    blocks = list(_ARMORED_KEY.finditer(keyring))
    if not blocks:
        return keyring
    packets = b""
    for block in blocks:
        lines = block["body"].replace(b"\r", b"").split(b"\n")
        body_start = lines.index(b"") + 1 if b"" in lines else 0  # after the armor headers
        payload = [line for line in lines[body_start:] if line and not line.startswith(b"=")]
        packets += base64.b64decode(b"".join(payload))
    return packets


def split_signatures(data: bytes, what: str = "manifest.json") -> list[bytes]:
    blocks = [m.group(0) for m in _ARMORED.finditer(data)]
    leftover = _ARMORED.sub(b"", data).strip()
    if leftover:
        raise BundleRejected("signature-format", f"the signatures over {what} hold data that is not an "
                             "ASCII-armored PGP signature.")
    if len(blocks) > MAX_SIGNATURES:
        raise BundleRejected("signature-format", f"more than {MAX_SIGNATURES} signatures.")
    return blocks


def join_signatures(blocks: list[bytes]) -> bytes:
    """Armored signatures as one file, each ending in a newline (what split_signatures reads back)."""
    return b"".join(b if b.endswith(b"\n") else b + b"\n" for b in blocks)


@dataclass(frozen=True)
class _Outcome:
    signer: Signer | None
    problem: str


def _status_lines(output: str) -> list[list[str]]:
    return [line.split()[1:] for line in output.splitlines() if line.startswith("[GNUPG:] ")]


def _gpgv(home: Path, keyring: Path, signature: bytes, manifest: Path, what: str) -> _Outcome:
    sig_file = home / "signature.asc"
    sig_file.write_bytes(signature)
    result = subprocess.run(["gpgv", "--homedir", str(home), "--status-fd", "1", "--keyring", str(keyring),
                             str(sig_file), str(manifest)], capture_output=True, text=True, check=False)
    status = _status_lines(result.stdout)
    words = {fields[0]: fields[1:] for fields in status if fields}
    if "VALIDSIG" in words and "GOODSIG" in words and result.returncode == 0:
        valid = words["VALIDSIG"]
        primary = valid[9] if len(valid) > 9 else valid[0]
        signed_at = datetime.fromtimestamp(int(valid[2]), UTC)
        return _Outcome(Signer(primary, " ".join(words["GOODSIG"][1:]), signed_at), "")
    key = next((words[k][0] for k in ("BADSIG", "EXPKEYSIG", "REVKEYSIG", "ERRSIG", "NO_PUBKEY") if k in words),
               "unknown key")
    if "BADSIG" in words:
        return _Outcome(None, f"signature by {key[-16:]} does not match {what}")
    if "EXPKEYSIG" in words or "EXPSIG" in words:
        return _Outcome(None, f"signature by {key[-16:]}: key or signature expired")
    if "REVKEYSIG" in words:
        return _Outcome(None, f"signature by {key[-16:]}: key revoked")
    if "NO_PUBKEY" in words or "ERRSIG" in words:
        return _Outcome(None, f"signature by untrusted key {key[-16:]}")
    return _Outcome(None, f"unreadable signature ({result.stderr.strip()[-200:] or 'gpgv failed'})")


def check_signatures(manifest: bytes, signatures: bytes, keyring: bytes, threshold: int, *,
                     what: str = "manifest.json") -> list[Signer]:
    """Return the distinct trusted signers; fail closed unless at least `threshold` signed.

    `manifest` is whatever was signed (a bundle's manifest.json, a keyring, a downgrade
    authorization); `what` names it in errors.
    """
    if threshold < 1:
        raise BundleError("The signature threshold must be at least 1.", "Signature checks cannot be turned off.")
    packets = dearmor(keyring)
    if not packets.strip():
        raise BundleError("The trusted keyring holds no public keys.",
                          "Pass the release public key file with --keyring.")
    if shutil.which("gpgv") is None:
        raise BundleError("gpgv is not installed, so signatures cannot be checked.", "apt-get install gpgv")
    blocks = split_signatures(signatures, what)
    if not blocks:
        raise BundleRejected("unsigned", f"there is no signature over {what}.",
                             "Sign the bundle with 'appliance-bundle sign' before shipping it.")
    signers: dict[str, Signer] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="appliance-gpgv-") as temp:
        home = Path(temp)
        home.chmod(0o700)
        (home / "trusted.gpg").write_bytes(packets)
        (home / "signed").write_bytes(manifest)
        for block in blocks:
            outcome = _gpgv(home, home / "trusted.gpg", block, home / "signed", what)
            if outcome.signer is not None:
                signers[outcome.signer.fingerprint] = outcome.signer
            else:
                problems.append(outcome.problem)
    if len(signers) < threshold:
        rule = _failed_rule(bool(signers), problems)
        detail = "; ".join(problems) or "no valid signature"
        raise BundleRejected(rule, f"{len(signers)} of the required {threshold} distinct trusted keys signed "
                             f"{what} ({detail}).", EXPIRED_KEY_HINT if rule == "expired-key" else "")
    return sorted(signers.values(), key=lambda s: s.fingerprint)


EXPIRED_KEY_HINT = ("A trusted release key has expired; its signatures no longer count, whenever they were made. "
                    "Install a bundle signed by a key this host still trusts (a release carrying a key rotation "
                    "is signed by the old and the new keys, and must be installed before the old key expires). "
                    "If this host missed that release, compare the new release key fingerprints out of band and "
                    "replace /etc/appliance/trusted-keys.pgp by hand (docs/adr/0038).")


def _failed_rule(some_signed: bool, problems: list[str]) -> str:
    if some_signed:
        return "threshold"
    if problems and all("untrusted" in p for p in problems):
        return "untrusted-signer"
    if any("expired" in p for p in problems) and all("expired" in p or "untrusted" in p for p in problems):
        return "expired-key"
    return "bad-signature"


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


def export_public_key(gnupghome: Path | None, fingerprint: str, *, armor: bool = True) -> bytes:
    """The public key, ASCII-armored, or binary (what gpgv's --keyring reads on a fresh host)."""
    gpg = gnupg.GPG(gnupghome=str(gnupghome) if gnupghome else None)
    data = gpg.export_keys(fingerprint, armor=armor)
    if not data:
        raise BundleError(f"No public key {fingerprint} in that keyring.", "List keys with 'gpg --list-keys'.")
    return data.encode() if isinstance(data, str) else bytes(data)
