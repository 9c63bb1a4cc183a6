"""A small real signed bundle the console's Upgrade page can verify: a real appliance wheel with migrations."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.bundles import ReleaseKey, build_bundle, make_key, make_stage, sign_bundle
from tests.support.server import LiveServer, live_server

VERSION = "99.0.0"  # newer than any checkout: the console's anti-rollback check passes
MIGRATIONS = ("000001_core", "000099_console_upgrade_test")  # the first is applied in every test database


@dataclass(frozen=True)
class SignedBundle:
    path: Path
    key: ReleaseKey

    def keyring(self, folder: Path) -> Path:
        keyring = folder / "trusted-keys.pgp"
        keyring.write_bytes(self.key.public)
        return keyring


def appliance_wheel(path: Path) -> None:
    """A wheel holding only the migrations, which the console reads to name the pending ones."""
    path.unlink(missing_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        for name in MIGRATIONS:
            wheel.writestr(f"appliance/db/migrations/{name}.up.sql", "SELECT 1;\n")


def signed_bundle(folder: Path) -> SignedBundle:
    key = make_key(folder, "console")
    stage = make_stage(folder, appliance_version=VERSION)
    appliance_wheel(stage / "wheels" / f"appliance-{VERSION}-py3-none-any.whl")
    bundle = build_bundle(stage, folder / "out", version=VERSION, min_upgrade_from="0.0.1")
    sign_bundle(bundle, key)
    return SignedBundle(bundle, key)


@contextmanager
def upgrade_server(conninfo: str, pki_dir: Path, bundle: SignedBundle, folder: Path,
                   **config: Any) -> Iterator[LiveServer]:
    """A live server whose Upgrade page trusts `bundle`'s key and applies requests (as if installed)."""
    with live_server(conninfo, pki_dir=pki_dir, upgrade_spool_dir=folder / "spool",
                     trusted_keys_file=bundle.keyring(folder), upgrade_journal=folder / "journal.json",
                     upgrade_path_unit=True, **config) as live:
        yield live
