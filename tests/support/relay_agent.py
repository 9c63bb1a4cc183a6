"""A stand-in for the workspace agent's session side: register with the real API, dial the relay, serve SSH.

It does what appliance/agent does for sessions (and nothing of lifecycle, logs or metadata): vouch
for a node key and report an SSH host key with the agent's token, connect to <url>/derp, and run
serve_session on every stream a paired client opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncssh

from appliance.agent.sshd import serve_session
from appliance.relay.client import DerpClient, RelayClosed
from appliance.relay.dial import connect_admitted, relay_url
from appliance.relay.keys import NodeKey
from appliance.relay.stream import PeerStreams
from appliance.sdk.agents import AgentManifest, AgentRelayRequest, AgentRelayResponse
from appliance.sdk.client import Client


@dataclass
class StandInAgent:
    url: str
    token: str
    directory: str
    node: NodeKey = field(default_factory=NodeKey.generate)
    host_key: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    sessions: int = 0
    answer_with: asyncssh.SSHKey | None = None  # a host key other than the reported one: an impostor
    relay: str = ""  # the relay's base URL when it is not the API's (a relay process of its own)

    def register(self) -> AgentManifest:
        """What the agent does first: read its manifest, vouch for its relay key, report its host key."""
        api = Client(self.url, self.token)
        manifest = api.call("GET", "/api/v2/workspaceagents/me/manifest", AgentManifest)
        api.call("POST", "/api/v2/workspaceagents/me/relay", AgentRelayResponse, body=AgentRelayRequest(
            node_key=self.node.public_hex, ssh_host_key=self.host_key.export_public_key().decode().strip()))
        return manifest

    async def serve(self, manifest: AgentManifest, connected: asyncio.Event | None = None) -> None:
        """Accept streams until the relay connection ends."""
        relay: DerpClient = await connect_admitted(relay_url(self.relay or self.url), self.node)
        streams = PeerStreams(relay)
        pump = asyncio.create_task(streams.run())
        if connected is not None:
            connected.set()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    _, sock = await streams.accept()
                except RelayClosed:  # revoked (the workspace stopped) or the relay went away: this agent is done
                    return
                self.sessions += 1
                task = asyncio.create_task(serve_session(
                    sock, host_key=self.answer_with or self.host_key, user_ca=manifest.ssh_user_ca,
                    agent_id=manifest.agent_id, directory=self.directory, env=manifest.env))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            pump.cancel()
            await relay.close()


@contextlib.contextmanager
def agent_in_thread(agent: StandInAgent) -> Iterator[StandInAgent]:
    """Run the stand-in on its own event loop, as a separate agent would, until the block ends."""
    manifest = agent.register()
    loop = asyncio.new_event_loop()
    connected = threading.Event()
    failed: list[BaseException] = []

    async def main() -> None:
        ready = asyncio.Event()
        serving = asyncio.create_task(agent.serve(manifest, ready))
        try:
            await asyncio.wait([serving, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
            connected.set()
            await serving
        except Exception as err:
            failed.append(err)
            connected.set()
            raise

    runner = threading.Thread(target=lambda: loop.run_until_complete(_quietly(main())), daemon=True)
    runner.start()
    if not connected.wait(30) or failed:
        raise RuntimeError(f"the stand-in agent did not connect to the relay: {failed}")
    try:
        yield agent
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        runner.join(10)


async def _quietly(coro: object) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await coro  # type: ignore[misc]
