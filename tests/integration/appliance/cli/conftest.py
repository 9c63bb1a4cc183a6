"""A member's seeded workspace "box" and its stand-in agent on the live server's relay, for the CLI's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agents import SeededAgent, seed_agent, seeded_member
from tests.support.api import Api
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer


@pytest.fixture
def member(owner_api: Api, shared_conninfo: str) -> Api:
    return seeded_member(owner_api, shared_conninfo)


@pytest.fixture
def seeded(member: Api, shared_conninfo: str) -> SeededAgent:
    return seed_agent(member, shared_conninfo, name="box")


@pytest.fixture
def agent(server: LiveServer, seeded: SeededAgent, tmp_path: Path) -> Iterator[StandInAgent]:
    with agent_in_thread(StandInAgent(server.url, seeded.token, str(tmp_path))) as running:
        yield running
