"""The running release's version and source commit."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import resources
from pathlib import Path

from appliance import __version__


@cache
def commit() -> str:
    """The commit baked in at build time, else the source checkout's HEAD, else 'unknown'."""
    baked = resources.files("appliance").joinpath("COMMIT")
    if baked.is_file():
        return baked.read_text().strip()
    source = Path(__file__).resolve().parent.parent
    if (source / ".git").exists():
        result = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return result.stdout.strip()
    return "unknown"


def version() -> str:
    return __version__
