"""Unpack a template's source archive for terraform, refusing anything that could escape the job dir.

The control plane runs the same check (`unsafe_member`) when a version is uploaded, so a template
it accepts is one every daemon will unpack. Checked by hand because Debian 12's Python (3.11.2)
predates tarfile's extraction filters.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path


def unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why a member may not be unpacked (links, devices, absolute or escaping paths), or None."""
    parts = Path(member.name).parts
    if not (member.isfile() or member.isdir()):
        return f"{member.name!r} is not a regular file or directory"
    if Path(member.name).is_absolute() or ".." in parts:
        return f"{member.name!r} points outside the template"
    return None


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Regular files and directories inside the template; anything else refuses the archive."""
    members = tar.getmembers()
    for member in members:
        problem = unsafe_member(member)
        if problem:
            raise tarfile.TarError(f"the template archive is refused: {problem}; push the template again without it")
        member.mode = 0o755 if member.isdir() or member.mode & 0o100 else 0o644
    return members


def unpack_template(source: bytes, into: Path) -> None:
    """Extract the archive into `into`, then drop state and .terraform/ a careless push may carry."""
    with tarfile.open(fileobj=io.BytesIO(source), mode="r:*") as tar:
        tar.extractall(into, members=_safe_members(tar))  # noqa: S202 -- members checked above
    for stale in [*into.glob("*.tfstate"), *into.glob("*.tfstate.backup"), into / ".terraform"]:
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
