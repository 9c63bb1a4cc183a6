"""The manifest: pure functions over bytes and dicts (no files, no GPG)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import semver

from bundles.errors import BundleRejected
from bundles.layout import (
    EXECUTABLE_MODE,
    FILE_MODE,
    FORMAT_VERSION,
    MANIFEST,
    MAX_MEMBERS,
    MAX_PATH_LENGTH,
    PRODUCT,
    ROLES,
    SIGNATURES,
    role_of,
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._+~%@=,-]+$")


@dataclass(frozen=True)
class Member:
    path: str
    size: int
    sha256: str
    role: str
    mode: int = FILE_MODE

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "role": self.role,
                "mode": f"{self.mode:04o}"}


@dataclass(frozen=True)
class Manifest:
    version: str
    created_at: datetime
    expires_at: datetime
    min_upgrade_from: str
    members: tuple[Member, ...]
    product: str = PRODUCT
    format_version: int = FORMAT_VERSION
    build: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "product": self.product,
            "version": self.version,
            "created_at": _timestamp(self.created_at),
            "expires_at": _timestamp(self.expires_at),
            "min_upgrade_from": self.min_upgrade_from,
            "build": dict(sorted(self.build.items())),
            "members": [m.to_json() for m in self.members],
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes: sorted keys, no spaces that vary, a final newline."""
        return (json.dumps(self.to_json(), indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()

    def size_by_role(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for member in self.members:
            totals[member.role] = totals.get(member.role, 0) + member.size
        return dict(sorted(totals.items()))

    @property
    def total_size(self) -> int:
        return sum(m.size for m in self.members)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_member_path(path: str) -> None:
    """A member path must be relative, normalised and plain: no '/', '..', '\\' tricks."""
    problem = None
    if not path or len(path) > MAX_PATH_LENGTH:
        problem = f"path length must be 1 to {MAX_PATH_LENGTH}"
    elif path.startswith("/"):
        problem = "absolute paths are not allowed"
    elif "\\" in path or "\x00" in path:
        problem = "backslashes and NUL bytes are not allowed"
    else:
        parts = path.split("/")
        if any(p in ("", ".", "..") for p in parts):
            problem = "empty, '.' and '..' path components are not allowed"
        elif not all(_SAFE_COMPONENT.match(p) for p in parts):
            problem = "only letters, digits and ._+~%@=,- are allowed in names"
        elif path in (MANIFEST, SIGNATURES):
            problem = "reserved name"
    if problem:
        raise BundleRejected("unsafe-path", f"{problem}.", member=path)


def parse_version(text: str, what: str) -> semver.Version:
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError) as err:
        raise BundleRejected("manifest-invalid", f"{what} {text!r} is not a SemVer version.") from err


def _time(data: dict[str, Any], key: str) -> datetime:
    try:
        return datetime.strptime(str(data[key]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (KeyError, ValueError) as err:
        raise BundleRejected("manifest-invalid", f"{key} is missing or not a UTC time like 2026-01-31T12:00:00Z.") \
            from err


def _member(raw: Any) -> Member:
    if not isinstance(raw, dict) or set(raw) != {"path", "size", "sha256", "role", "mode"}:
        raise BundleRejected("manifest-invalid", f"member entry {raw!r} must have path, size, sha256, role and mode.")
    path, size, sha256, role, mode = raw["path"], raw["size"], raw["sha256"], raw["role"], raw["mode"]
    if not isinstance(path, str):
        raise BundleRejected("manifest-invalid", "a member path is not a string.")
    check_member_path(path)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BundleRejected("manifest-invalid", "size must be a non-negative integer.", member=path)
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise BundleRejected("manifest-invalid", "sha256 must be 64 lowercase hex digits.", member=path)
    if role not in ROLES or role_of(path) != role:
        raise BundleRejected("manifest-invalid", f"role {role!r} does not match its folder.", member=path)
    if mode not in (f"{FILE_MODE:04o}", f"{EXECUTABLE_MODE:04o}"):
        raise BundleRejected("manifest-invalid", f"mode {mode!r} must be 0644 or 0755.", member=path)
    return Member(path, size, sha256, role, int(mode, 8))


def parse_manifest(data: bytes) -> Manifest:
    """Parse and check a manifest whose signatures were already verified."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleRejected("manifest-invalid", f"manifest.json is not valid JSON ({err}).") from err
    if not isinstance(raw, dict):
        raise BundleRejected("manifest-invalid", "manifest.json must hold a JSON object.")
    if raw.get("format_version") != FORMAT_VERSION:
        raise BundleRejected("format-version", f"format version {raw.get('format_version')!r} is not "
                             f"{FORMAT_VERSION}, the one this tool reads.",
                             "Use the appliance-bundle / installer release that matches this bundle.")
    if raw.get("product") != PRODUCT:
        raise BundleRejected("manifest-invalid", f"product {raw.get('product')!r} is not {PRODUCT!r}.")
    version = str(raw.get("version"))
    parse_version(version, "version")
    minimum = str(raw.get("min_upgrade_from"))
    parse_version(minimum, "min_upgrade_from")
    members = raw.get("members")
    if not isinstance(members, list) or len(members) > MAX_MEMBERS:
        raise BundleRejected("manifest-invalid", f"members must be a list of at most {MAX_MEMBERS} entries.")
    parsed = tuple(_member(m) for m in members)
    paths = [m.path for m in parsed]
    if len(set(paths)) != len(paths):
        duplicate = next(p for p in paths if paths.count(p) > 1)
        raise BundleRejected("duplicate-member", "listed twice in the manifest.", member=duplicate)
    if paths != sorted(paths):
        raise BundleRejected("manifest-invalid", "members must be listed sorted by path.")
    build = raw.get("build") or {}
    if not isinstance(build, dict):
        raise BundleRejected("manifest-invalid", "build must be an object of strings.")
    created, expires = _time(raw, "created_at"), _time(raw, "expires_at")
    if expires <= created:
        raise BundleRejected("manifest-invalid", "expires_at must be after created_at.")
    return Manifest(version=version, created_at=created, expires_at=expires, min_upgrade_from=minimum,
                    members=parsed, build={str(k): str(v) for k, v in build.items()})
