"""Running the installed release's `appliance` command as root: how the installer talks to the control plane.

The installer imports nothing from `appliance` (its import contract); it runs the CLI of the
release /opt/appliance/current points at, with that host's appliance.toml.
"""

from __future__ import annotations

import os
import subprocess

from installer.errors import InstallError
from installer.paths import HostPaths


def run_appliance(paths: HostPaths, *args: str, step: str, stdin: str | None = None) -> str:
    """stdout of `appliance ARGS` from the current release; InstallError naming `step` when it fails."""
    command = [str(paths.current / "venv/bin/appliance"), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, input=stdin,
                                env={**os.environ, "APPLIANCE_CONFIG": str(paths.config)})
    except OSError as err:
        raise InstallError(f"cannot run {command[0]}: {err.strerror}.",
                           "Is a release installed? Check: appliance-installer status", step=step) from err
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip())[-500:]
        raise InstallError(f"`appliance {' '.join(args)}` failed (exit {result.returncode}): {said}",
                           f"Run it by hand to see why: APPLIANCE_CONFIG={paths.config} {command[0]} "
                           f"{' '.join(args)}", step=step)
    return result.stdout
