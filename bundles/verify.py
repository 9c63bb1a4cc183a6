"""Verify a bundle, failing closed, in one streamed pass with constant memory.

Order matters: the signatures over manifest.json are checked before the manifest is trusted,
and the manifest before any payload byte is read. Then every member must arrive in the listed
order, as a regular file with the listed mode and size, hashing to the listed sha256; nothing
extra, nothing missing, nothing after the end of the archive. Optionally the payload is
extracted as it is verified, into a temporary folder that becomes the target only on success.

A caller that reads a bundle twice (verify, then extract) passes the same open file both times
and the manifest digest of the first pass: a bundle replaced or rewritten in between is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from bundles.downgrade import VerifiedDowngrade, check_authorization
from bundles.errors import BundleError, BundleRejected
from bundles.layout import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURES_BYTES,
    READ_CHUNK,
    ROTATION_KEYRING,
    ROTATION_SIGNATURES,
    SIGNATURES,
)
from bundles.manifest import Manifest, Member, check_member_path, digest, parse_manifest, parse_version
from bundles.rotation import KeyRotation, check_listed, check_rotation
from bundles.signatures import Signer, check_signatures

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class TrustPolicy:
    """What the verifier requires. There is deliberately no way to skip signatures."""

    keyring: bytes
    threshold: int = 1
    installed_version: str | None = None   # anti-rollback floor: refuse anything older
    now: datetime | None = None
    accept_expired_reason: str | None = None  # logged override for a site whose clock is wrong
    # The signed permission to go below installed_version (bundles/downgrade.py): only for exactly that pair.
    downgrade_authorization: bytes | None = None

    @classmethod
    def from_keyring_file(cls, path: Path, **kwargs: Any) -> TrustPolicy:
        try:
            return cls(keyring=path.read_bytes(), **kwargs)
        except OSError as err:
            raise BundleError(f"Cannot read the trusted keyring {path}: {err.strerror}.",
                              "Pass the release public key file with --keyring.") from err


@dataclass(frozen=True)
class VerifiedBundle:
    manifest: Manifest
    manifest_sha256: str
    signers: list[Signer]
    verified_at: datetime
    overrides: list[str] = field(default_factory=list)
    downgrade: VerifiedDowngrade | None = None   # the authorization that let an older bundle through
    rotation: KeyRotation | None = None          # a new keyring, verified under the current threshold

    @property
    def new_keyring(self) -> bytes | None:
        """The keyring to pin once this release is installed and healthy, or None (no rotation)."""
        return self.rotation.keyring if self.rotation else None

    def receipt(self) -> dict[str, Any]:
        """What the installer stores and the console shows as proof of verification."""
        return {
            "version": self.manifest.version,
            "manifest_sha256": self.manifest_sha256,
            "signers": [s.to_json() for s in self.signers],
            "verified_at": self.verified_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires_at": self.manifest.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            # The health report's clock check (ECLK01): the host's clock must not be before this.
            "created_at": self.manifest.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "overrides": self.overrides,
            "downgrade_authorization": self.downgrade.to_json() if self.downgrade else None,
            "key_rotation": self.rotation.to_json() if self.rotation else None,
        }


def _read_small(tar: tarfile.TarFile, expected: str, limit: int, rule: str) -> bytes:
    info = tar.next()
    if info is None or info.name != expected:
        found = "nothing" if info is None else repr(info.name)
        if expected == SIGNATURES:
            raise BundleRejected("unsigned", f"the second member must be {SIGNATURES}, found {found}.",
                                 "Sign the bundle with 'appliance-bundle sign' before shipping it.")
        raise BundleRejected(rule, f"the first member must be {expected}, found {found}.")
    if not info.isreg():
        raise BundleRejected("not-regular-file", "must be a regular file.", member=info.name)
    if info.size > limit:
        raise BundleRejected("size-limit", f"is {info.size} bytes, over the {limit} byte limit.", member=info.name)
    handle = tar.extractfile(info)
    assert handle is not None
    return handle.read()


def _check_policy(manifest: Manifest, policy: TrustPolicy, now: datetime) -> list[str]:
    overrides: list[str] = []
    if now >= manifest.expires_at:
        expired = f"expired on {manifest.expires_at:%Y-%m-%d %H:%M} UTC"
        if not policy.accept_expired_reason:
            raise BundleRejected("expired", f"this bundle {expired}.",
                                 "Get a newer bundle. If this host's clock is wrong, fix it; as a last resort "
                                 "pass --accept-expired REASON, which is recorded.")
        overrides.append(f"accepted a bundle that {expired}: {policy.accept_expired_reason}")
        log.warning("bundle_expiry_overridden", extra={"version": manifest.version,
                                                       "reason": policy.accept_expired_reason})
    return overrides


def _check_version(manifest: Manifest, policy: TrustPolicy, now: datetime) -> VerifiedDowngrade | None:
    """The anti-rollback floor and the upgrade path; an older bundle passes only with its authorization."""
    if not policy.installed_version:
        return None
    installed = parse_version(policy.installed_version, "installed version")
    if parse_version(manifest.version, "version") < installed:
        if policy.downgrade_authorization is None:
            raise BundleRejected("rollback", f"version {manifest.version} is older than the installed "
                                 f"{policy.installed_version}.",
                                 "Install this version or a newer one. To go back on purpose, the release key "
                                 "holders sign a downgrade authorization: appliance-bundle authorize-downgrade "
                                 f"--from {policy.installed_version} --to {manifest.version} --reason TEXT --key FPR; "
                                 "pass it with --downgrade-authorization FILE.")
        return check_authorization(policy.downgrade_authorization, keyring=policy.keyring,
                                   threshold=policy.threshold, installed=policy.installed_version,
                                   version=manifest.version, now=now)
    if installed < parse_version(manifest.min_upgrade_from, "min_upgrade_from"):
        raise BundleRejected("upgrade-path", f"this bundle upgrades only from {manifest.min_upgrade_from} or "
                             f"later; {policy.installed_version} is installed.",
                             f"Install a bundle of version {manifest.min_upgrade_from} first.")
    return None


def _check_header(info: tarfile.TarInfo, expected: Member | None, listed: set[str], seen: set[str]) -> Member:
    check_member_path(info.name)
    if info.name in seen:
        raise BundleRejected("duplicate-member", "appears twice in the archive.", member=info.name)
    seen.add(info.name)
    if info.name not in listed:
        raise BundleRejected("unexpected-member", "is not listed in the manifest (added, appended or renamed).",
                             member=info.name)
    if expected is None or info.name != expected.path:
        where = f"where the manifest lists {expected.path}" if expected else "after the last listed member"
        raise BundleRejected("out-of-order", f"found {where} (members removed or reordered).", member=info.name)
    if not info.isreg():
        kind = "a symlink" if info.issym() else "a hard link" if info.islnk() else \
            "a device file" if (info.ischr() or info.isblk() or info.isfifo()) else "not a regular file"
        raise BundleRejected("not-regular-file", f"is {kind}.", member=info.name)
    if info.size != expected.size:
        rule = "size-larger" if info.size > expected.size else "size-smaller"
        raise BundleRejected(rule, f"is {info.size} bytes, the manifest says {expected.size}.", member=info.name)
    if info.mode & 0o7777 != expected.mode:
        raise BundleRejected("mode-mismatch", f"has mode {info.mode & 0o7777:04o}, the manifest says "
                             f"{expected.mode:04o}.", member=info.name)
    return expected


def _hash_member(tar: tarfile.TarFile, info: tarfile.TarInfo, member: Member, target: Path | None,
                 progress: Progress | None, kept: bytearray | None = None) -> None:
    """Hash (and extract) one member; with `kept`, also keep its bytes (small members only)."""
    handle = tar.extractfile(info)
    assert handle is not None
    hasher = hashlib.sha256()
    out = None
    if target is not None:
        path = target / member.path
        path.parent.mkdir(parents=True, exist_ok=True)
        out = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, member.mode), "wb")
    try:
        remaining = member.size
        while remaining:
            chunk = handle.read(min(READ_CHUNK, remaining))
            if not chunk:
                raise BundleRejected("truncated", "ends before its declared size.", member=member.path)
            hasher.update(chunk)
            if kept is not None:
                kept += chunk
            if out is not None:
                out.write(chunk)
            remaining -= len(chunk)
            if progress:
                progress(len(chunk))
    finally:
        if out is not None:
            out.close()
    actual = hasher.hexdigest()
    if actual != member.sha256:
        raise BundleRejected("hash-mismatch", f"sha256 is {actual[:16]}…, the manifest says {member.sha256[:16]}….",
                             member=member.path)


def _check_trailing(raw: BinaryIO, end_offset: int) -> None:
    """After the end-of-archive marker only zero padding may follow."""
    raw.seek(end_offset)
    while chunk := raw.read(READ_CHUNK):
        if chunk.count(0) != len(chunk):
            raise BundleRejected("trailing-data", "bytes follow the end of the archive.")


def open_bundle(bundle: Path) -> BinaryIO:
    """The bundle, opened once: every later read goes through this one file, whatever then happens to the path."""
    try:
        return bundle.open("rb")
    except FileNotFoundError as err:
        raise BundleError(f"No bundle at {bundle}.", "Check the path.") from err
    except OSError as err:
        raise BundleError(f"Cannot read the bundle {bundle}: {err.strerror}.", "Check the path and its permissions.") \
            from err


def verify_bundle(bundle: Path | BinaryIO, policy: TrustPolicy, *, extract_to: Path | None = None,
                  progress: Progress | None = None, manifest_sha256: str | None = None) -> VerifiedBundle:
    """Verify (and optionally extract) a bundle; raise BundleRejected naming the first broken rule.

    `bundle` is a path or a file from open_bundle (read from its start). With `manifest_sha256`,
    a manifest.json with any other digest is refused before anything is extracted.
    """
    if extract_to is not None and extract_to.exists():
        raise BundleError(f"{extract_to} already exists.", "Choose a new folder to extract into.")
    if isinstance(bundle, Path):
        with open_bundle(bundle) as raw:
            return verify_bundle(raw, policy, extract_to=extract_to, progress=progress,
                                 manifest_sha256=manifest_sha256)
    staging = Path(tempfile.mkdtemp(prefix=f".{extract_to.name}.", dir=extract_to.parent)) if extract_to else None
    try:
        bundle.seek(0)
        result = _verify_stream(bundle, policy, staging, progress, manifest_sha256)
        if staging is not None and extract_to is not None:
            staging.chmod(0o755)  # mkdtemp made it private; an extracted release is readable like any other
            staging.replace(extract_to)
            staging = None
        return result
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _check_same_manifest(manifest_bytes: bytes, expected: str | None) -> None:
    actual = digest(manifest_bytes)
    if expected is not None and actual != expected:
        raise BundleRejected("changed-while-read", f"manifest.json now has sha256 {actual[:16]}…, not the "
                             f"{expected[:16]}… verified before: the bundle file changed while it was being read.",
                             "Make sure nothing writes to the bundle file during the install, then run the "
                             "installer again.")


def _verify_stream(raw: BinaryIO, policy: TrustPolicy, staging: Path | None, progress: Progress | None,
                   manifest_sha256: str | None) -> VerifiedBundle:
    try:
        with tarfile.open(fileobj=raw, mode="r|", bufsize=READ_CHUNK) as tar:
            manifest_bytes = _read_small(tar, MANIFEST, MAX_MANIFEST_BYTES, "not-a-bundle")
            _check_same_manifest(manifest_bytes, manifest_sha256)
            signatures = _read_small(tar, SIGNATURES, MAX_SIGNATURES_BYTES, "unsigned")
            signers = check_signatures(manifest_bytes, signatures, policy.keyring, policy.threshold)
            manifest = parse_manifest(manifest_bytes)
            check_listed(manifest)
            now = policy.now or datetime.now(UTC)
            overrides = _check_policy(manifest, policy, now)
            downgrade = _check_version(manifest, policy, now)
            expected = iter(manifest.members)
            listed, seen = {m.path for m in manifest.members}, set[str]()
            kept: dict[str, bytearray] = {}
            # tar.next(), not iteration: iterating a TarFile replays the members already read.
            while (info := tar.next()) is not None:
                member = _check_header(info, next(expected, None), listed, seen)
                keep = kept.setdefault(member.path, bytearray()) if member.role == "keys" else None
                _hash_member(tar, info, member, staging, progress, keep)
            missing = next(expected, None)
            if missing is not None:
                raise BundleRejected("missing-member", "is listed in the manifest but not in the bundle.",
                                     member=missing.path)
            end_offset = tar.offset
    except (tarfile.ReadError, EOFError) as err:
        raise BundleRejected("truncated", f"the archive is damaged or cut short ({err}).") from err
    _check_trailing(raw, end_offset)
    rotation = check_rotation(_bytes(kept.get(ROTATION_KEYRING)), _bytes(kept.get(ROTATION_SIGNATURES)),
                              policy.keyring, policy.threshold)
    return VerifiedBundle(manifest, digest(manifest_bytes), signers, datetime.now(UTC), overrides, downgrade,
                          rotation)


def _bytes(data: bytearray | None) -> bytes | None:
    return None if data is None else bytes(data)
