"""The agent's PyInstaller executable: `appliance agent package` builds it once per change of its inputs,
and the executable itself (not Python from source) reaches ready against a real control plane."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from appliance import __version__
from appliance.server.agent_binary import cache_path
from tests.support.agents import AGENT_CACHE, agent_log, agent_process, agent_workspace, package_argv, wait_agent
from tests.support.api import Api
from tests.support.server import LiveServer

pytestmark = pytest.mark.integration


def package(out: Path) -> float:
    started = time.monotonic()
    result = subprocess.run(package_argv(out), capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr
    assert f"as {out / 'appliance-agent-linux-amd64'}" in result.stdout
    return time.monotonic() - started


def test_the_packaged_executable_runs_the_agent_to_ready(owner: Api, agent_server: LiveServer,
                                                         tmp_path: Path) -> None:
    package(tmp_path / "first")  # builds it, unless an earlier run left it in the cache
    assert cache_path(AGENT_CACHE).is_file()
    assert package(tmp_path / "again") < 15, "an unchanged agent comes from the cache, PyInstaller does not run"
    binary = tmp_path / "again" / "appliance-agent-linux-amd64"
    assert binary.read_bytes() == cache_path(AGENT_CACHE).read_bytes() and os.access(binary, os.X_OK)

    ws = agent_workspace(owner, "frozen", script="echo from the executable")
    # No PYTHONPATH, no venv: what runs is the one file.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "", "HOME": str(tmp_path / "home")}
    with agent_process(agent_server.url, ws.token, tmp_path / "home", command=[str(binary)], env=env):
        agent = wait_agent(owner, ws.agent_id, lambda a: a["lifecycle_state"] == "ready" and a["status"] == "connected",
                           home=tmp_path / "home")
    assert agent["version"] == __version__
    assert agent_log(owner, ws.agent_id) == ["from the executable"]
