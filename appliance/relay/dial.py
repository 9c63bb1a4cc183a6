"""A client's SSH session to a workspace agent, every byte through the relay (ADR 0026).

Pair with the control plane (a fresh node key and SSH key per session; it vouches for the key on
the relay and certifies the SSH key for this agent), dial <base URL>/derp, open a stream to the
agent's node key, and run SSH over it, pinning the host key the agent reported. Used by `appliance
ping`, `appliance speedtest`, and what connects to a workspace next (ssh, port-forward, terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncssh
import tenacity

from appliance.errors import OperatorError
from appliance.relay.client import DerpClient, RelayClosed, RelayRefused, connect
from appliance.relay.keys import NodeKey, parse_hex_key
from appliance.relay.preamble import cert_line
from appliance.relay.stream import PeerStreams
from appliance.sdk.agents import RELAY_PATH, ConnectionKind, PairRequest, PairResponse
from appliance.sdk.client import Client
from appliance.sdk.workspaces import WorkspaceResponse

# Subsystems the agent serves beside shells (appliance/agent/sshd.py), for ping and speedtest.
ECHO, SOURCE, SINK = "appliance-echo", "appliance-source", "appliance-sink"
# The web terminal's reconnecting PTY (appliance/agent/rpty.py, ADR 0030): subsystem RPTY_PREFIX + reconnect id
# on a channel with a PTY; the channel's RPTY_COMMAND_ENV names a command to run instead of a login shell.
RPTY_PREFIX, RPTY_COMMAND_ENV = "appliance-rpty:", "APPLIANCE_RPTY_COMMAND"
CONNECT_TIMEOUT = 15.0  # seconds for the relay handshake and then the SSH login
# AEAD ciphers only, AES-GCM first: with AES-NI it moves about 1.5x chacha20's bytes per CPU second here.
CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]
ADMISSION_GRACE = 5.0  # seconds a fresh key may be refused while the relay hears of it
REASON_GRACE = 0.5  # seconds an ended session waits for the relay connection to say why it closed


@dataclass
class Stream:
    """One end of a relayed byte stream to an agent, the relay connection under it, and its pump."""

    sock: socket.socket
    relay: DerpClient
    pump: asyncio.Task[None]
    pairing: PairResponse


@dataclass
class Session:
    """A logged-in SSH connection to one agent, and the relay connection under it."""

    ssh: asyncssh.SSHClientConnection
    pairing: PairResponse
    relay: DerpClient


def agent_of(workspace: WorkspaceResponse, name: str = "") -> str:
    """The id of the workspace's agent (the one named, or the only one); an error saying why there is none."""
    build = workspace.latest_build
    if build.transition != "start":
        raise OperatorError(f"Workspace {workspace.name} is {workspace.status}, so its agent is not running.",
                            f"Start it with 'appliance start {workspace.name}', then try again.")
    if workspace.status in ("failed", "canceling", "canceled"):
        raise OperatorError(f"Workspace {workspace.name}'s last start {workspace.status}.",
                            f"See 'appliance builds logs {workspace.name}', then 'appliance start {workspace.name}'.")
    agents = [a for r in build.resources for a in r.agents if not name or a.name == name]
    if len(agents) != 1:
        which = f"an agent named {name}" if name else "exactly one agent"
        raise OperatorError(f"Workspace {workspace.name} does not have {which}.",
                            "Its template declares agents with coder_agent resources; name one with --agent.")
    return agents[0].id


def relay_url(base_url: str) -> str:
    return base_url.rstrip("/") + RELAY_PATH


def _ssl_context(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None


def pair(client: Client, agent_id: str, node: NodeKey, ssh_key: asyncssh.SSHKey,
         kind: ConnectionKind = "ssh") -> PairResponse:
    """Have the control plane vouch for our relay key and certify our SSH key for this agent.

    Its refusals say what to do: 409 when the agent has not connected yet or its build stopped,
    403/404 for someone else's workspace.
    """
    body = PairRequest(node_key=node.public_hex, ssh_public_key=ssh_key.export_public_key().decode().strip(),
                       kind=kind)
    return client.call("POST", f"/api/v2/workspaceagents/{agent_id}/pair", PairResponse, body=body)


@contextlib.asynccontextmanager
async def open_session(client: Client, agent_id: str, *, websocket: bool = False, relay: str = "",
                       kind: ConnectionKind = "ssh") -> AsyncIterator[Session]:
    """Pair, dial the relay (at <API URL>/derp unless `relay` names another base URL), log in over SSH."""
    node, ssh_key = NodeKey.generate(), asyncssh.generate_private_key("ssh-ed25519")
    pairing = await asyncio.to_thread(pair, client, agent_id, node, ssh_key, kind)
    url = relay_url(relay or client.url)
    async with attach(pairing, node, ssh_key, url, _ssl_context(url, client.ca_file), websocket=websocket) as session:
        yield session


@contextlib.asynccontextmanager
async def attach(pairing: PairResponse, node: NodeKey, ssh_key: asyncssh.SSHKey, url: str,
                 context: ssl.SSLContext | None, *, websocket: bool = False) -> AsyncIterator[Session]:
    """Dial the relay at `url` with the node key a pairing vouched for and log in over SSH to its agent.

    What a client that paired some other way uses: the console's gateway pairs in-process, on the
    browser user's behalf (appliance.workspaces.pairing), then attaches here as the CLI does.
    """
    async with relayed_stream(pairing, node, url, context, websocket=websocket) as stream:
        ssh = await _login(stream.sock, pairing, ssh_key)
        try:
            yield Session(ssh, pairing, stream.relay)
        except (asyncssh.Error, RelayClosed, OSError, asyncio.IncompleteReadError) as err:
            # SSH may notice first; the pump ends a moment later with the relay's reason (access revoked).
            await asyncio.wait([stream.pump], timeout=REASON_GRACE)
            raise OperatorError(f"The session to the workspace's agent ended: {_why_ended(stream.pump, err)}.",
                                "The workspace may have stopped, your token been revoked, or the relay or the "
                                "agent restarted; check 'appliance show WORKSPACE' and run the command again.") from err
        finally:
            ssh.close()
            await ssh.wait_closed()


@contextlib.asynccontextmanager
async def relayed_stream(pairing: PairResponse, node: NodeKey, url: str, context: ssl.SSLContext | None, *,
                         websocket: bool = False) -> AsyncIterator[Stream]:
    """A byte stream to the paired agent through the relay at `url`, before anyone speaks SSH on it."""
    derp = await dial_relay(url, node, context, websocket)
    streams = PeerStreams(derp)
    pump = asyncio.create_task(streams.run())
    try:
        yield Stream(await streams.connect(parse_hex_key(pairing.agent_node_key)), derp, pump, pairing)
    finally:
        pump.cancel()
        await derp.close()


@contextlib.asynccontextmanager
async def open_stdio_stream(client: Client, agent_id: str, ssh_key: asyncssh.SSHKey) -> AsyncIterator[Stream]:
    """What `appliance ssh --stdio` pipes OpenSSH into: a stream that began with the certificate line for
    `ssh_key` (appliance.relay.preamble), so the agent lets OpenSSH log in with that key."""
    node = NodeKey.generate()
    pairing = await asyncio.to_thread(pair, client, agent_id, node, ssh_key, "ssh")
    url = relay_url(client.url)
    async with relayed_stream(pairing, node, url, _ssl_context(url, client.ca_file)) as stream:
        stream.sock.sendall(cert_line(pairing.ssh_certificate))  # one short line into an empty socket buffer
        yield stream


def _why_ended(pump: asyncio.Task[None], err: BaseException) -> str:
    """The relay's reason when it closed the connection (it says why), else what SSH noticed."""
    if pump.done() and not pump.cancelled() and isinstance(pump.exception(), RelayClosed):
        return str(pump.exception()) or "the relay closed the connection"
    return str(err) or type(err).__name__


async def connect_admitted(url: str, node: NodeKey, *, ssl: ssl.SSLContext | None = None,
                           websocket: bool = False) -> DerpClient:
    """connect(), retrying a refusal for a moment: the relay learns a just-vouched key through NOTIFY."""
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(RelayRefused), reraise=True,
        stop=tenacity.stop_after_delay(ADMISSION_GRACE),
        wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=0.5, jitter=0.05))
    async for attempt in retrying:
        with attempt:
            return await connect(url, node, ssl=ssl, websocket=websocket, timeout=CONNECT_TIMEOUT)
    raise AssertionError("unreachable: tenacity reraises the last refusal")


async def dial_relay(url: str, node: NodeKey, context: ssl.SSLContext | None, websocket: bool) -> DerpClient:
    try:
        return await connect_admitted(url, node, ssl=context, websocket=websocket)
    except RelayRefused as err:
        raise OperatorError(f"The relay at {url} refused this client: {err.reason}.",
                            "Your session may have expired or the workspace stopped; log in again or start "
                            "the workspace, then retry.") from err
    except (RelayClosed, OSError, TimeoutError) as err:
        raise OperatorError(f"Cannot reach the relay at {url}: {err}.",
                            "Check that 'appliance server' is running and that the URL is the one you logged "
                            "in with.") from err


async def _login(sock: Any, pairing: PairResponse, ssh_key: asyncssh.SSHKey) -> asyncssh.SSHClientConnection:
    pinned = asyncssh.import_public_key(pairing.agent_ssh_host_key)
    try:
        return await asyncssh.connect(
            pairing.agent_id, sock=sock, username=pairing.ssh_username,
            client_keys=[(ssh_key, asyncssh.import_certificate(pairing.ssh_certificate))],
            known_hosts=([pinned], [], []), encoding=None, compression_algs=["none"], encryption_algs=CIPHERS,
            connect_timeout=CONNECT_TIMEOUT, config=None, agent_path=None)
    except asyncssh.HostKeyNotVerifiable as err:
        raise OperatorError(
            f"The agent answered with an SSH host key other than the one it reported "
            f"({pinned.get_fingerprint()}); the connection was closed.",
            "Something other than the workspace's agent answered. Restart the workspace; if it persists, "
            "tell an administrator.") from err
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError, TimeoutError) as err:
        raise OperatorError(f"The workspace's agent did not answer through the relay: {err}.",
                            "It may have just disconnected; check 'appliance show WORKSPACE' and retry.") from err
