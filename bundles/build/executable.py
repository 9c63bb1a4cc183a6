"""The appliance-installer as one executable (PyInstaller), so the host needs no Python packages.

Builds are cached by a digest of their inputs (the project's Python sources, the Python,
PyInstaller and collected packages' versions), so rebuilding an unchanged installer is a copy.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bundles.errors import BundleError

_SKIPPED = {".venv", ".cache", ".git", "tests", "dist", "build", "benchmarks", "node_modules", "__pycache__"}


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def inputs_digest(project: Path, name: str, collect: tuple[str, ...]) -> str:
    hasher = hashlib.sha256(f"{name} {collect} {platform.python_version()} {_version('pyinstaller')}".encode())
    for package in collect:
        hasher.update(f"{package}=={_version(package + '-core')}/{_version(package)}".encode())
    sources = sorted(p for p in project.rglob("*.py") if not _SKIPPED & set(p.relative_to(project).parts))
    for source in sources:
        hasher.update(source.relative_to(project).as_posix().encode() + b"\0" + source.read_bytes())
    return hasher.hexdigest()[:16]


def build_executable(entry: Path, name: str, out: Path, work: Path, collect: tuple[str, ...] = ()) -> Path:
    project = entry.resolve().parent.parent
    cached = work / "built" / inputs_digest(project, name, collect) / name
    if not cached.exists():
        _pyinstaller(entry, name, cached.parent, work, collect)
    out.mkdir(parents=True, exist_ok=True)
    built = out / name
    shutil.copy2(cached, built)
    built.chmod(0o755)
    return built


def _pyinstaller(entry: Path, name: str, out: Path, work: Path, collect: tuple[str, ...]) -> None:
    if shutil.which("objdump") is None:
        raise BundleError("objdump is not installed; PyInstaller needs it.", "apt-get install binutils")
    work.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--clean", "--log-level", "WARN",
         "--name", name, "--distpath", str(partial), "--workpath", str(work / "build"), "--specpath", str(work),
         "--paths", str(entry.resolve().parent.parent),
         *(arg for package in collect for arg in ("--collect-all", package)), str(entry)],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-4:])
        raise BundleError(f"PyInstaller failed to build {name}: {tail}",
                          "Install the build extra (pip install '.[build]') and retry.")
    partial.replace(out)
