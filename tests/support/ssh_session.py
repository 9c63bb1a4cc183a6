"""SSH keys as the control plane hands them out, and an agent's SSH server on one end of a socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncssh

from appliance.agent.sshd import serve_session


@dataclass
class SessionKeys:
    """The user CA, the agent's host key, and a client key certified for `agent_id`."""

    agent_id: str = "agent-1"
    ca: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    host: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    user: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))

    @property
    def user_ca(self) -> str:
        return self.ca.export_public_key().decode()

    def certificate(self, principal: str | None = None,
                    signer: asyncssh.SSHKey | None = None) -> asyncssh.SSHCertificate:
        return (signer or self.ca).generate_user_certificate(
            self.user, "test-session", principals=[principal or self.agent_id], valid_before="+1h")


def serve(sock: socket.socket, keys: SessionKeys, directory: str, env: dict[str, str] | None = None
          ) -> asyncio.Task[None]:
    """Run the agent's SSH server on `sock` as the agent does for each accepted stream."""
    return asyncio.create_task(serve_session(sock, host_key=keys.host, user_ca=keys.user_ca, agent_id=keys.agent_id,
                                             directory=directory, env=env or {}))


async def login(sock: socket.socket, keys: SessionKeys, client_keys: object = None,
                **options: object) -> asyncssh.SSHClientConnection:
    """Log in as `appliance ssh` does: the host key pinned, the certificate as the only credential."""
    return await asyncssh.connect(
        keys.agent_id, sock=sock, username="dev", known_hosts=([keys.host.export_public_key()], [], []),
        client_keys=client_keys if client_keys is not None else [(keys.user, keys.certificate())],
        encoding=None, config=None, agent_path=None, connect_timeout=10, **options)


@contextlib.asynccontextmanager
async def session_over_socketpair(keys: SessionKeys, directory: str, env: dict[str, str] | None = None
                                  ) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """A logged-in session to serve_session over a plain socketpair (no relay): the SSH layer alone."""
    agent_end, client_end = socket.socketpair()
    server = serve(agent_end, keys, directory, env)
    conn = await login(client_end, keys)
    try:
        yield conn
    finally:
        conn.close()
        await conn.wait_closed()
        await asyncio.wait_for(server, 10)
