"""GET /bin/appliance-agent-linux-amd64: the executable; 503 while the server builds it; 404 with a hint."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from appliance.sdk.agents import AGENT_BINARY_PATH
from tests.support.server import LiveServer, live_server


@pytest.fixture(scope="module")
def binary_server(shared_conninfo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(shared_conninfo, agent_binary_dir=tmp_path_factory.mktemp("agent")) as live:
        yield live


@pytest.fixture
def binary_dir(binary_server: LiveServer) -> Iterator[Path]:
    directory = binary_server.config.agent_binary_dir
    yield directory
    for leftover in directory.iterdir():
        leftover.unlink()


def test_a_missing_executable_is_a_404_that_says_where_it_should_be(binary_server: LiveServer,
                                                                     binary_dir: Path) -> None:
    answer = requests.get(binary_server.url + AGENT_BINARY_PATH, timeout=10)
    assert answer.status_code == 404
    body = answer.json()
    assert str(binary_dir / "appliance-agent-linux-amd64") in body["message"]
    assert "agent_binary_dir" in body["detail"] and "appliance agent package" in body["detail"]


def test_while_the_server_builds_it_the_answer_is_503_with_retry_after(binary_server: LiveServer,
                                                                        binary_dir: Path) -> None:
    (binary_dir / "appliance-agent-linux-amd64.building").write_text(str(os.getpid()))
    answer = requests.get(binary_server.url + AGENT_BINARY_PATH, timeout=10)
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert "still being built" in answer.json()["message"]


def test_a_build_marker_left_by_a_dead_server_does_not_hide_the_404(binary_server: LiveServer,
                                                                      binary_dir: Path) -> None:
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout.strip()
    (binary_dir / "appliance-agent-linux-amd64.building").write_text(gone)
    assert requests.get(binary_server.url + AGENT_BINARY_PATH, timeout=10).status_code == 404


def test_the_executable_is_served_as_built(binary_server: LiveServer, binary_dir: Path) -> None:
    payload = os.urandom(300_000)
    (binary_dir / "appliance-agent-linux-amd64").write_bytes(payload)
    answer = requests.get(binary_server.url + AGENT_BINARY_PATH, timeout=10)
    assert answer.status_code == 200 and answer.content == payload
    assert answer.headers["Content-Type"] == "application/octet-stream"
