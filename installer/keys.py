"""The release keys this host trusts: read the downgrade authorization, pin a verified key rotation.

A rotation (bundles/rotation.py) is pinned only after the release that carried it is installed
and healthy, so a failed install or upgrade leaves the old keys in place (docs/adr/0038).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from bundles.manifest import digest
from bundles.verify import VerifiedBundle
from installer.errors import InstallError
from installer.paths import HostPaths


def read_downgrade_authorization(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise InstallError(f"Cannot read the downgrade authorization {path}: {err.strerror}.",
                           "Check the --downgrade-authorization path.", step="Verify bundle") from err


def pin_rotated_keys(result: VerifiedBundle, paths: HostPaths) -> dict[str, Any] | None:
    """Replace the pinned keyring with the bundle's verified new one; what the receipt records, or None."""
    if result.new_keyring is None:
        return None
    previous = paths.trusted_keys.read_bytes() if paths.trusted_keys.exists() else b""
    _replace_durably(paths.trusted_keys, result.new_keyring, 0o644)
    return {"pinned": str(paths.trusted_keys), "previous_keyring_sha256": digest(previous),
            "keyring_sha256": digest(result.new_keyring)}


def _replace_durably(path: Path, data: bytes, mode: int) -> None:
    """Temp file beside `path`, fsync, rename over it, fsync the folder: the old keys or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
