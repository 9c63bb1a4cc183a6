"""The Vagrantfile is valid Vagrant, with and without a built bundle beside it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _validate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.fail("vagrant is missing: apt-get install vagrant (dev/system-packages.sh --test installs it)")
    # No hypervisor runs here, so validate the file without picking a provider.
    return subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, check=False)


def test_vagrant_validate_passes_on_a_clean_checkout() -> None:
    result = _validate({"APPLIANCE_BUNDLE": "dist/no-such.bundle"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout


def test_vagrant_validate_passes_with_a_bundle_to_install(tmp_path: Path) -> None:
    (tmp_path / "appliance-0.1.0.bundle").write_bytes(b"bundle")
    (tmp_path / "release.gpg").write_bytes(b"key")
    result = _validate({"APPLIANCE_BUNDLE": str(tmp_path / "appliance-0.1.0.bundle"),
                        "APPLIANCE_KEYRING": str(tmp_path / "release.gpg")})
    assert result.returncode == 0, result.stdout + result.stderr
