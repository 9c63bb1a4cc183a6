"""Running the `appliance` command as a developer would: its own process, logged in through the environment."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.api import Api

COMMAND = [sys.executable, "-m", "appliance"]


def cli_env(url: str, user: Api) -> dict[str, str]:
    """This environment without any APPLIANCE_* of the caller's, logged in to `url` as `user`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    return env | {"APPLIANCE_URL": url, "APPLIANCE_SESSION_TOKEN": user.token or ""}


def run_cli(url: str, user: Api, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=cli_env(url, user),
                          timeout=timeout, check=False)
