"""The release keys this host trusts: read the downgrade authorization, pin a verified key rotation.

A rotation (bundles/rotation.py) is pinned only after the release that carried it is installed
and healthy, so a failed install or upgrade leaves the old keys in place (docs/adr/0038).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundles.manifest import digest
from bundles.verify import VerifiedBundle
from installer.errors import InstallError
from installer.journal import write_atomically
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
    write_atomically(paths.trusted_keys, result.new_keyring, 0o644)
    return {"pinned": str(paths.trusted_keys), "previous_keyring_sha256": digest(previous),
            "keyring_sha256": digest(result.new_keyring)}
