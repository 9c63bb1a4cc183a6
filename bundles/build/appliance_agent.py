"""The workspace agent executable for the bundle, built by `appliance agent package`.

Run as a command, not imported: bundles does not import the appliance package. The executable is
cached under CACHE/agent by the agent's own packaging (a digest of its sources), so an unchanged
agent costs a copy, not a PyInstaller build. On the installed host the console serves it at
/bin/appliance-agent-linux-amd64 (appliance.toml's agent_binary_dir).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bundles.errors import BundleError

EXECUTABLES = ("appliance-agent-linux-amd64",)  # what the init script of every template downloads


def package_appliance_agent(cache: Path, project: Path, out: Path) -> list[Path]:
    """The agent built from `project` into `out` (the stage's agent/ folder): one executable per platform."""
    out.mkdir(parents=True, exist_ok=True)
    # Run from the project, so `-m appliance` is the source tree being released, not whatever is installed.
    result = subprocess.run([sys.executable, "-m", "appliance", "agent", "package", str(out.resolve()),
                             "--cache-dir", str(cache.resolve() / "agent")], cwd=project, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise BundleError(f"Packaging the workspace agent failed: {tail}",
                          "Install the build extra (pip install '.[build]'), then build again.")
    built = [out / name for name in EXECUTABLES]
    missing = [path.name for path in built if not (path.is_file() and os.access(path, os.X_OK))]
    if missing:
        raise BundleError(f"`appliance agent package` wrote no executable {', '.join(missing)} in {out}.",
                          "Run it by hand to see why: appliance agent package /tmp/agent")
    return built
