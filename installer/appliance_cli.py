"""Running a release's `appliance` command as root: how the installer talks to the control plane.

The installer imports nothing from `appliance` (its import contract); it runs the CLI of the
current release (or a staged one), with this host's appliance.toml.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from installer.errors import InstallError
from installer.paths import HostPaths


def run_appliance(paths: HostPaths, *args: str, release: Path | None = None,
                  timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`appliance ARGS` of `release` (default: the current one) as root; a non-zero exit is returned, not raised."""
    executable = (release or paths.current) / "venv/bin/appliance"
    return subprocess.run([str(executable), *args], capture_output=True, text=True, check=False, timeout=timeout,
                          env={**os.environ, "APPLIANCE_CONFIG": str(paths.config)})


def check_appliance(paths: HostPaths, *args: str, step: str) -> str:
    """stdout of the current release's `appliance ARGS`; InstallError naming `step` when it fails."""
    try:
        result = run_appliance(paths, *args)
    except OSError as err:
        raise InstallError(f"cannot run {paths.current}/venv/bin/appliance: {err.strerror}.",
                           "Is a release installed? Check: appliance-installer status", step=step) from err
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip())[-500:]
        raise InstallError(f"`appliance {' '.join(args)}` failed (exit {result.returncode}): {said}",
                           f"Run it by hand to see why: APPLIANCE_CONFIG={paths.config} "
                           f"{paths.current}/venv/bin/appliance {' '.join(args)}", step=step)
    return result.stdout
