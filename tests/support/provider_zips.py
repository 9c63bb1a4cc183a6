"""Provider zips for tests: fakes with the right shape (fast, for pure checks) and real ones (PyInstaller)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from mirror.layout import archive_name
from mirror.package import build_provider_zip

GREETING = Path(__file__).resolve().parent / "providers" / "greeting.py"


def fake_provider_zip(folder: Path, provider_type: str, version: str, *, payload: bytes = b"#!/bin/sh\n",
                      executable: str | None = None, platform: str = "linux_amd64") -> Path:
    """A zip shaped like a provider package; its executable is not a real provider."""
    os_name, arch = platform.split("_")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / archive_name(provider_type, version, os_name, arch)
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo(executable or f"terraform-provider-{provider_type}_v{version}", (2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o755 << 16
        archive.writestr(info, payload)
        archive.writestr(zipfile.ZipInfo("LICENSE", (2020, 1, 1, 0, 0, 0)), b"license text\n")
    return path


def real_provider_zip(folder: Path, provider_type: str, version: str) -> Path:
    """A working provider (the greeting test provider) packaged like a release."""
    return build_provider_zip(GREETING, provider_type, version, folder)
