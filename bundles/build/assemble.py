"""Stage folder -> manifest -> deterministic tar. The same stage and SOURCE_DATE_EPOCH give the same bytes."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bundles.errors import BundleError, BundleRejected
from bundles.layout import EXECUTABLE_MODE, FILE_MODE, READ_CHUNK, SBOM, bundle_file_name, role_of
from bundles.manifest import Manifest, Member, check_member_path, parse_version
from bundles.tarball import write_bundle

Progress = Callable[[int], None]


def build_time() -> datetime:
    """SOURCE_DATE_EPOCH when set (reproducible builds), otherwise now, to the second."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        if not epoch.isdigit():
            raise BundleError(f"SOURCE_DATE_EPOCH={epoch!r} is not a whole number of seconds.", "Fix or unset it.")
        return datetime.fromtimestamp(int(epoch), UTC)
    return datetime.now(UTC).replace(microsecond=0)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def stage_members(stage: Path) -> list[Member]:
    """Every file in the stage as a manifest member, except the stage's own top-level bookkeeping
    (.versions.json); dot-names deeper down are content (e.g. registry/.well-known/terraform.json)."""
    members = []
    for path in sorted(stage.rglob("*"), key=lambda p: p.relative_to(stage).as_posix()):
        relative = path.relative_to(stage).as_posix()
        is_bookkeeping = relative.split("/")[0].startswith(".")
        if is_bookkeeping or (path.is_dir() and not path.is_symlink()):
            continue
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"Stage file {relative} is not a regular file (links and devices cannot be bundled).",
                              "Replace it with a copy of its target.")
        try:
            check_member_path(relative)
        except BundleRejected as err:
            raise BundleError(f"Stage file {relative} has a name a bundle cannot carry: {err.message}",
                              "Rename it.") from err
        role = role_of(relative)
        if role is None:
            raise BundleError(f"Stage file {relative} is outside every bundle folder.",
                              "Put it under installer/, wheels/, debs/, terraform/, providers/, images/, agent/, "
                              f"playbooks/, docs/ or keys/ (or it is the {SBOM}).")
        mode = EXECUTABLE_MODE if info.st_mode & stat.S_IXUSR else FILE_MODE
        members.append(Member(relative, info.st_size, _sha256(path), role, mode))
    return members


def assemble(stage: Path, output_dir: Path, *, version: str, created: datetime, expires_after: timedelta,
             min_upgrade_from: str, build_info: dict[str, str], progress: Progress | None = None) -> Path:
    parse_version(version, "--version")
    parse_version(min_upgrade_from, "min_upgrade_from")
    members = stage_members(stage)
    if not members:
        raise BundleError(f"The stage {stage} is empty.", "Collect the artifacts first.")
    manifest = Manifest(version=version, created_at=created, expires_at=created + expires_after,
                        min_upgrade_from=min_upgrade_from, members=tuple(members), build=build_info)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / bundle_file_name(version)
    write_bundle(out, manifest, stage, mtime=int(created.timestamp()), progress=progress)
    return out
