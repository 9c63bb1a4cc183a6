"""Wheels for the target: the project's own wheel, and every dependency as a binary wheel for
CPython on manylinux x86_64, so the offline host installs with `pip install --no-index`.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from bundles.errors import BundleError

# Debian 12 ships glibc 2.36: every manylinux wheel up to that level runs there.
TARGET_PLATFORMS = ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                    "manylinux2014_x86_64")


def _pip(*args: str, what: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-4:])
        raise BundleError(f"{what} failed: {tail}",
                          "Check access to the package index and that every dependency has a wheel for the target.")


def project_requirements(project: Path, extras: tuple[str, ...] = ()) -> list[str]:
    data = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    requirements = list(data.get("dependencies", []))
    for extra in extras:
        requirements += data.get("optional-dependencies", {}).get(extra, [])
    return requirements


def collect_wheels(project: Path, out: Path, *, python: str, extras: tuple[str, ...] = ()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _pip("wheel", "--no-deps", "--wheel-dir", str(out), str(project), what=f"building the wheel of {project}")
    version = python.replace(".", "")
    platforms = [arg for platform in TARGET_PLATFORMS for arg in ("--platform", platform)]
    _pip("download", "--only-binary=:all:", "--dest", str(out), "--python-version", python, "--implementation",
         "cp", "--abi", f"cp{version}", "--abi", "abi3", "--abi", "none", *platforms,
         *project_requirements(project, extras), what="downloading dependency wheels for the target")
