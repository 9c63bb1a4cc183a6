"""The agent's relay link: register its node key, dial the relay, heartbeat, reconnect, serve SSH sessions.

One node key per agent process, vouched for by POST me/relay (again at half its lifetime, and on
every reconnect: a relay that restarted reloads admissions from the database). Every stream a
client opens becomes an SSH session (sshd.py). A relay that goes away, says Restarting or stops
answering pings is dialled again after a backoff with jitter, or after the delay Restarting asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncssh

from appliance.agent.backoff import Backoff
from appliance.agent.controlplane import ControlPlane
from appliance.agent.settings import AgentSettings
from appliance.agent.sshd import serve_session
from appliance.errors import OperatorError
from appliance.relay.client import DerpClient, Event, RelayClosed, Restarting, connect
from appliance.relay.keys import NodeKey
from appliance.relay.stream import PeerStreams

log = logging.getLogger("appliance.agent.relay")

HEARTBEAT_SECONDS = 15.0
PING_TIMEOUT = 5.0
HELD_SECONDS = 30.0  # a connection that lasted this long resets the backoff
RENEW_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class SessionSpec:
    """What every SSH session on this agent shares."""

    host_key: asyncssh.SSHKey
    user_ca: str
    agent_id: str
    directory: str
    env: dict[str, str]


@dataclass
class RelayLink:
    api: ControlPlane
    settings: AgentSettings
    session: SessionSpec
    key: NodeKey = field(default_factory=NodeKey.generate)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _expires_at: datetime | None = None

    @property
    def host_key_line(self) -> str:
        return self.session.host_key.export_public_key("openssh").decode().strip()

    async def run(self) -> None:
        """Stay connected until cancelled."""
        backoff = Backoff()
        while True:
            try:
                await self._register()
                client = await connect(self.settings.relay_url, self.key, ssl=self.settings.ssl_context())
            except (OperatorError, RelayClosed, OSError, TimeoutError) as err:
                delay = backoff.next_delay()
                log.warning("relay_connect_failed", extra={"url": self.settings.relay_url, "reason": _reason(err),
                                                           "retry_in": round(delay, 1)})
                await asyncio.sleep(delay)
                continue
            started = time.monotonic()
            log.info("relay_connected", extra={"url": self.settings.relay_url, "node_key": self.key.public_hex})
            self.connected.set()
            try:
                reason, asked = await self._serve(client)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await client.close()
            if time.monotonic() - started >= HELD_SECONDS:
                backoff.reset()
            delay = asked if asked is not None else backoff.next_delay()
            log.warning("relay_disconnected", extra={"reason": reason, "retry_in": round(delay, 1)})
            await asyncio.sleep(delay)

    async def _register(self) -> None:
        answer = await asyncio.to_thread(self.api.register_relay, self.key.public_hex, self.host_key_line)
        self._expires_at = answer.expires_at

    async def _serve(self, client: DerpClient) -> tuple[str, float | None]:
        """Serve until the connection ends: why it ended, and the delay the relay asked for, if it did."""
        announced: list[Restarting] = []
        streams = PeerStreams(client, on_event=lambda event: _note(event, announced))
        sessions: set[asyncio.Task[None]] = set()
        tasks = [asyncio.create_task(streams.run(), name="relay-pump"),
                 asyncio.create_task(self._accept(streams, sessions), name="relay-accept"),
                 asyncio.create_task(self._heartbeat(client), name="relay-heartbeat"),
                 asyncio.create_task(self._renew(), name="relay-renew")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, *sessions]:
                task.cancel()
            await asyncio.gather(*tasks, *sessions, return_exceptions=True)
        reason = _ended(done)
        if announced:
            return f"the relay is restarting ({reason})", announced[-1].reconnect_in
        return reason, None

    async def _accept(self, streams: PeerStreams, sessions: set[asyncio.Task[None]]) -> None:
        while True:
            peer, sock = await streams.accept()
            log.info("session_opened", extra={"peer": peer.hex()})
            task = asyncio.create_task(self._session(peer, sock), name=f"session-{peer.hex()[:8]}")
            sessions.add(task)
            task.add_done_callback(sessions.discard)

    async def _session(self, peer: bytes, sock: socket.socket) -> None:
        spec = self.session
        try:
            await serve_session(sock, host_key=spec.host_key, user_ca=spec.user_ca, agent_id=spec.agent_id,
                                directory=spec.directory, env=spec.env)
        except (OSError, asyncssh.Error) as err:
            log.warning("session_failed", extra={"peer": peer.hex(), "reason": str(err)})
        finally:
            sock.close()
            log.info("session_closed", extra={"peer": peer.hex()})

    async def _heartbeat(self, client: DerpClient) -> None:
        """Return when the relay stops answering: a half-open TCP connection would otherwise look alive."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await client.ping(PING_TIMEOUT)
            except (TimeoutError, RelayClosed, OSError) as err:
                raise RelayClosed(f"no answer to a ping within {PING_TIMEOUT:.0f} s ({_reason(err)})") from err

    async def _renew(self) -> None:
        """Register again at half the admission's remaining lifetime, so the relay never drops this key."""
        while True:
            remaining = (self._expires_at - datetime.now(UTC)).total_seconds() if self._expires_at else 60.0
            await asyncio.sleep(max(1.0, remaining / 2))
            try:
                await self._register()
            except OperatorError as err:
                log.warning("relay_renewal_failed", extra={"reason": err.message, "retry_in": RENEW_RETRY_SECONDS})
                await asyncio.sleep(RENEW_RETRY_SECONDS)


def _note(event: Event, announced: list[Restarting]) -> None:
    if isinstance(event, Restarting):
        announced.append(event)
    else:
        log.info("relay_event", extra={"event": repr(event)})


def _ended(done: set[asyncio.Task[None]]) -> str:
    for task in done:
        if task.cancelled():
            continue
        error = task.exception()
        if error is not None:
            return _reason(error)
    return "connection ended"


def _reason(err: BaseException) -> str:
    if isinstance(err, RelayClosed):
        return err.reason or "the relay closed the connection"
    if isinstance(err, OperatorError):
        return err.message
    return str(err) or type(err).__name__
