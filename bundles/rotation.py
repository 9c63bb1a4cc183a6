"""Release-key rotation: a bundle may carry the next trusted keyring (TUF's root rotation, simplified).

The bundle carries `keys/release-keyring.pgp` and `keys/release-keyring.pgp.sig`, listed and
hashed like every other member. The rotation is accepted only when the detached signatures
over the keyring meet the threshold twice: counted against the keys the host trusts now, and
counted against the new keyring itself (the new keys prove they can sign). The installer pins
it only after the release it came with is installed and healthy (docs/adr/0038).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bundles.errors import BundleError, BundleRejected
from bundles.layout import MAX_KEYRING_BYTES, ROTATION_KEYRING, ROTATION_SIGNATURES
from bundles.manifest import Manifest, digest
from bundles.signatures import Signer, check_signatures, dearmor, join_signatures, sign_manifest, split_signatures


@dataclass(frozen=True)
class KeyRotation:
    keyring: bytes
    current_signers: list[Signer]   # keys trusted before the rotation that signed it
    new_signers: list[Signer]       # keys of the new keyring that signed it

    def to_json(self) -> dict[str, object]:
        return {"keyring_sha256": digest(self.keyring),
                "signed_by_current": [s.to_json() for s in self.current_signers],
                "signed_by_new": [s.to_json() for s in self.new_signers]}


def check_rotation(keyring: bytes | None, signatures: bytes | None, trusted: bytes,
                   threshold: int) -> KeyRotation | None:
    """The verified rotation, None when the bundle carries none or the same keys; BundleRejected otherwise."""
    if keyring is None and signatures is None:
        return None
    if keyring is None or signatures is None:
        present, absent = (ROTATION_KEYRING, ROTATION_SIGNATURES) if keyring else (ROTATION_SIGNATURES,
                                                                                  ROTATION_KEYRING)
        raise BundleRejected("key-rotation", f"the bundle carries {present} without {absent}.",
                             "Build the bundle again with 'appliance-bundle build --rotate-keyring FILE', "
                             "after 'appliance-bundle rotate-keys FILE' made the signatures.")
    if b"PRIVATE KEY" in keyring:
        raise BundleRejected("key-rotation", f"{ROTATION_KEYRING} holds a secret key.",
                             "Export only public keys: appliance-bundle keys export FPR --output FILE.")
    if dearmor(keyring) == dearmor(trusted):
        return None
    current = _counted(keyring, signatures, trusted, threshold, "the keys this host trusts now")
    new = _counted(keyring, signatures, keyring, threshold, "the new keys themselves (proof they can sign)")
    return KeyRotation(keyring, current, new)


def _counted(keyring: bytes, signatures: bytes, trusted: bytes, threshold: int, whose: str) -> list[Signer]:
    try:
        return check_signatures(keyring, signatures, trusted, threshold, what=ROTATION_KEYRING)
    except BundleRejected as err:
        raise BundleRejected(f"key-rotation-{err.rule}", f"the new release keyring is not signed by {whose}: "
                             f"{err.detail}",
                             err.hint if err.rule == "expired-key" else
                             "Do not install it: nothing was pinned. A rotation must be signed by the current "
                             "release keys (meeting the threshold) and by the new keys; see docs/adr/0038.") \
            from err


# -- build side --------------------------------------------------------------------------------


def signatures_path(keyring: Path) -> Path:
    return keyring.with_name(keyring.name + ".sig")


def sign_keyring(keyring: Path, fingerprints: tuple[str, ...], gnupghome: Path | None,
                 passphrase: str | None) -> int:
    """Add detached signatures over `keyring` to KEYRING.sig, keeping those already there; the total."""
    data = _read(keyring)
    sig_file = signatures_path(keyring)
    blocks = split_signatures(sig_file.read_bytes(), ROTATION_KEYRING) if sig_file.exists() else []
    blocks += [sign_manifest(data, fingerprint, gnupghome, passphrase) for fingerprint in fingerprints]
    sig_file.write_bytes(join_signatures(blocks))
    return len(blocks)


def stage_rotation(stage: Path, keyring: Path) -> None:
    """Put the keyring and its signatures into the stage, where the manifest lists and hashes them."""
    sig_file = signatures_path(keyring)
    if not sig_file.exists():
        raise BundleError(f"{keyring} has no signatures ({sig_file.name} is missing).",
                          f"Sign it first, with the current and the new keys: appliance-bundle rotate-keys {keyring} "
                          "--key FPR [--key FPR2]")
    _read(keyring)
    (stage / ROTATION_KEYRING).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(keyring, stage / ROTATION_KEYRING)
    shutil.copyfile(sig_file, stage / ROTATION_SIGNATURES)


def _read(keyring: Path) -> bytes:
    try:
        data = keyring.read_bytes()
    except OSError as err:
        raise BundleError(f"Cannot read the new keyring {keyring}: {err.strerror}.", "Check the path.") from err
    if not dearmor(data).strip():
        raise BundleError(f"{keyring} holds no public keys.",
                          "Export the new release keys: appliance-bundle keys export FPR --output FILE.")
    return data


def check_listed(manifest: Manifest) -> None:
    """Before any payload byte: keys/ may hold only the keyring and its signatures, each small."""
    for member in manifest.members:
        if member.role != "keys":
            continue
        if member.path not in (ROTATION_KEYRING, ROTATION_SIGNATURES):
            raise BundleRejected("manifest-invalid", f"keys/ may hold only {ROTATION_KEYRING} and "
                                 f"{ROTATION_SIGNATURES}.", member=member.path)
        if member.size > MAX_KEYRING_BYTES:
            raise BundleRejected("size-limit", f"is {member.size} bytes, over the {MAX_KEYRING_BYTES} byte limit.",
                                 member=member.path)
