"""The appliance-installer as one executable (PyInstaller), so the host needs no Python packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bundles.errors import BundleError


def build_executable(entry: Path, name: str, out: Path, work: Path, collect: tuple[str, ...] = ()) -> Path:
    if shutil.which("objdump") is None:
        raise BundleError("objdump is not installed; PyInstaller needs it.", "apt-get install binutils")
    work.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--clean", "--log-level", "WARN",
         "--name", name, "--distpath", str(out), "--workpath", str(work / "build"), "--specpath", str(work),
         "--paths", str(entry.resolve().parent.parent),
         *(arg for package in collect for arg in ("--collect-all", package)), str(entry)],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-4:])
        raise BundleError(f"PyInstaller failed to build {name}: {tail}",
                          "Install the build extra (pip install '.[build]') and retry.")
    built = out / name
    built.chmod(0o755)
    return built
