"""How a relayed stream to an agent begins: SSH at once, or one certificate line first (ADR 0029).

Layout of a stream's first bytes, as the agent reads them (appliance/agent/sshd.py):

    SSH-2.0-...\\r\\n                     a client that logs in with its certificate (appliance ssh, ping,
                                         the console's gateway): plain SSH, the agent reads nothing first
    appliance-ssh-cert <cert line>\\n     `appliance ssh --stdio` for OpenSSH: an OpenSSH user certificate
                                         (from pairing), then OpenSSH's own bytes; that one SSH connection
                                         accepts the certified key as a plain public key

The certificate is no secret (OpenSSH sends one in clear inside its encrypted transport anyway; here
the relay sees it): it names a public key, and OpenSSH must still prove it holds the private key.
A line longer than MAX_LINE, another first byte, or a certificate that is not the site CA's for
this agent closes the stream.
"""

from __future__ import annotations

import asyncio
import socket

import asyncssh
from asyncssh.public_key import CERT_TYPE_USER, SSHOpenSSHCertificate

CERT_PREFIX = b"appliance-ssh-cert "
SSH_BANNER_START = b"S"  # every SSH identification string begins "SSH-"
MAX_LINE = 8192  # an ed25519 certificate line is about 700 bytes
_PARTIAL_WAIT = 0.01  # seconds between looks at a line that has only partly arrived


class PreambleError(ValueError):
    """A stream that begins with neither SSH nor a valid certificate line."""


def cert_line(certificate: str) -> bytes:
    """What `appliance ssh --stdio` writes before OpenSSH's bytes."""
    return CERT_PREFIX + certificate.strip().encode("ascii") + b"\n"


def certified_key(line: bytes, user_ca: str, agent_id: str) -> asyncssh.SSHKey:
    """The public key a preamble's certificate vouches for: signed by the site's user CA, for this agent, now."""
    if not line.startswith(CERT_PREFIX) or not line.endswith(b"\n"):
        raise PreambleError("the stream began with neither SSH nor a certificate line")
    try:
        cert = asyncssh.import_certificate(line[len(CERT_PREFIX):].strip())  # checks the CA's signature
    except (asyncssh.KeyImportError, ValueError) as err:
        raise PreambleError(f"the certificate line is not an OpenSSH certificate ({err})") from err
    if not isinstance(cert, SSHOpenSSHCertificate):
        raise PreambleError("the certificate line is not an OpenSSH certificate")
    ca = asyncssh.import_public_key(user_ca.strip())
    if cert.signing_key.public_data != ca.public_data:
        raise PreambleError("the certificate is not signed by the site's SSH user CA")
    try:
        cert.validate(CERT_TYPE_USER, agent_id)
    except ValueError as err:
        raise PreambleError(f"the certificate does not admit this agent now ({err})") from err
    return cert.key


async def read_preamble(sock: socket.socket) -> bytes | None:
    """The certificate line a stream begins with (consumed), or None for plain SSH (nothing consumed)."""
    sock.setblocking(False)
    while True:
        await _readable(sock)
        head = sock.recv(MAX_LINE, socket.MSG_PEEK)
        if not head:
            raise PreambleError("the stream closed before SSH began")
        if head.startswith(SSH_BANNER_START):
            return None
        if not head.startswith(CERT_PREFIX[:len(head)]):
            raise PreambleError("the stream began with neither SSH nor a certificate line")
        end = head.find(b"\n")
        if end >= 0:
            return _take(sock, end + 1)
        if len(head) >= MAX_LINE:
            raise PreambleError(f"the certificate line is longer than {MAX_LINE} bytes")
        await asyncio.sleep(_PARTIAL_WAIT)  # the socket stays readable: wait for the rest rather than spin


def _take(sock: socket.socket, count: int) -> bytes:
    """Consume exactly `count` bytes that a peek saw waiting, leaving what follows for SSH."""
    taken = b""
    while len(taken) < count:
        taken += sock.recv(count - len(taken))
    return taken


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())
