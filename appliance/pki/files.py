"""Crash-safe file writes: a temp file in the same folder, fsync, then rename over the target."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    """Replace path with data so readers see the old content or the new, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)  # noqa: PTH101 -- the umask may have narrowed the mode given to open()
        if owner is not None:
            os.chown(temp, *owner)
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def switch_symlink(link: Path, target: Path) -> None:
    """Point link at target in one rename, so it is never missing or half-made."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.tmp")
    temp.symlink_to(os.path.relpath(target, link.parent))
    temp.replace(link)
    _fsync_dir(link.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
