"""What a developer reads when the relayed SSH session cannot be made: an impostor's host key, a key the
relay does not admit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from appliance.errors import OperatorError
from appliance.relay.dial import dial_relay, open_session, relay_url
from appliance.relay.keys import NodeKey
from appliance.sdk.client import Client
from tests.support.agents import seed_agent, seed_template
from tests.support.api import Api
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer

pytestmark = pytest.mark.integration


def test_an_agent_answering_with_another_host_key_is_refused(server: LiveServer, owner_api: Api,
                                                             shared_conninfo: str, tmp_path: Path) -> None:
    seed_template(shared_conninfo)
    seeded = seed_agent(owner_api, shared_conninfo)
    impostor = StandInAgent(server.url, seeded.token, str(tmp_path),
                            answer_with=asyncssh.generate_private_key("ssh-ed25519"))

    async def attempt() -> None:
        async with open_session(Client(server.url, owner_api.token), seeded.agent_id):
            pytest.fail("logged in to an agent whose host key is not the pinned one")

    with agent_in_thread(impostor), pytest.raises(OperatorError) as refused:
        asyncio.run(attempt())
    assert "host key other than the one it reported" in refused.value.message
    assert asyncssh.import_public_key(impostor.host_key.export_public_key()).get_fingerprint() in refused.value.message
    assert "Restart the workspace" in refused.value.hint


def test_a_key_nobody_vouched_for_is_refused_by_the_relay_with_its_reason(server: LiveServer, api: Api) -> None:
    with pytest.raises(OperatorError) as refused:
        asyncio.run(dial_relay(relay_url(server.url), NodeKey.generate(), None, False))
    assert f"The relay at {server.url}/derp refused this client" in refused.value.message
    assert "log in again or start the workspace" in refused.value.hint
