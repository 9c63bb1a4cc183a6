"""`appliance port-forward WS --tcp [IP:]LOCAL:REMOTE`: local TCP ports carried to ports inside a workspace.

One relayed SSH session to the agent; a listener per local port; each accepted connection becomes
its own SSH direct-tcpip channel to 127.0.0.1:REMOTE in the workspace (the agent opens loopback
ports only). Each channel has its own SSH window and each copy waits for the other side to drain
before it reads again, so a slow forward holds only its own bytes and never stalls a fast one.
docs/adr/0032-port-forwarding-and-listening-ports.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import asyncssh
import click

from appliance.cli.agent_wait import Wait, connected_agent, wait_option
from appliance.cli.client import ApiClient, with_client
from appliance.cli.ping import agent_option
from appliance.errors import OperatorError
from appliance.relay.dial import Session, open_session

DEFAULT_HOST = "127.0.0.1"
WORKSPACE_HOST = "127.0.0.1"  # the agent forwards to loopback only
BLOCK = 64 << 10  # bytes read at a time; the next read waits until these are written on
SPEC_HELP = "[IP:]LOCAL:REMOTE, or ranges of equal length: 8000-8005:9000-9005; IP defaults to 127.0.0.1."


@dataclass(frozen=True)
class Forward:
    host: str
    local: int
    remote: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.local}"


def parse_forwards(specs: Sequence[str]) -> list[Forward]:
    """Every --tcp value expanded to one Forward per port; a bad value raises click.BadParameter naming it."""
    forwards: list[Forward] = []
    for spec in specs:
        forwards.extend(_parse(spec))
    seen: set[tuple[str, int]] = set()
    for forward in forwards:
        if (forward.host, forward.local) in seen:
            raise click.BadParameter(f"local port {forward} is forwarded twice.", param_hint="'--tcp'")
        seen.add((forward.host, forward.local))
    return forwards


def _parse(spec: str) -> list[Forward]:
    host, rest = DEFAULT_HOST, spec
    if spec.startswith("["):  # an IPv6 address: [::1]:8000:9000
        host, _, rest = spec[1:].partition("]")
        rest = rest.removeprefix(":")
    elif spec.count(":") == 2:
        host, rest = spec.split(":", 1)
    local, sep, remote = rest.partition(":")
    if not sep:
        raise _bad(spec, "give LOCAL:REMOTE")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise _bad(spec, f"{host!r} is not an IP address") from None
    locals_, remotes = _ports(spec, local), _ports(spec, remote)
    if len(locals_) != len(remotes):
        raise _bad(spec, f"the ranges differ in length ({len(locals_)} local, {len(remotes)} remote ports)")
    return [Forward(host, lo, re) for lo, re in zip(locals_, remotes, strict=True)]


def _ports(spec: str, text: str) -> list[int]:
    first, sep, last = text.partition("-")
    start = _port(spec, first)
    end = _port(spec, last) if sep else start
    if end < start:
        raise _bad(spec, f"the range {text} runs backwards")
    return list(range(start, end + 1))


def _port(spec: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise _bad(spec, f"{text!r} is not a port (1-65535)")
    return int(text)


def _bad(spec: str, why: str) -> click.BadParameter:
    return click.BadParameter(f"{spec!r}: {why}. Expected {SPEC_HELP}", param_hint="'--tcp'")


@click.command("port-forward")
@click.argument("workspace")
@click.option("--tcp", "specs", multiple=True, required=True, metavar="[IP:]LOCAL:REMOTE",
              help=f"Forward a local TCP port to a port in the workspace (repeatable). {SPEC_HELP}")
@agent_option
@wait_option
@with_client
def port_forward(workspace: str, specs: tuple[str, ...], agent: str, wait: Wait, client: ApiClient) -> None:
    """Forward local TCP ports to ports inside a workspace, through the relay, encrypted end to end."""
    forwards = parse_forwards(specs)
    listeners = [_listen(f) for f in forwards]  # before pairing: a port in use fails at once, nothing recorded
    try:
        found, agent_id = connected_agent(client, workspace, agent, wait=wait)
        asyncio.run(_serve(client, found.name, agent_id, list(zip(forwards, listeners, strict=True))))
    finally:
        for sock in listeners:
            sock.close()


def _listen(forward: Forward) -> socket.socket:
    family = socket.AF_INET6 if ":" in forward.host else socket.AF_INET
    try:
        return socket.create_server((forward.host, forward.local), family=family)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise OperatorError(f"Cannot listen on {forward}: the port is already in use.",
                                f"Stop what listens there (see 'ss -ltnp'), or forward another local port: "
                                f"--tcp OTHER:{forward.remote}.") from err
        raise OperatorError(f"Cannot listen on {forward}: {err.strerror or err}.",
                            "Use a local address of this machine and a port you may open (1024 and up "
                            "without privileges).") from err


async def _serve(client: ApiClient, name: str, agent_id: str, listeners: list[tuple[Forward, socket.socket]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_session(client, agent_id, kind="port-forward") as session:
        servers = [await asyncio.start_server(_Carrier(session, f).handle, sock=sock) for f, sock in listeners]
        for forward, _ in listeners:
            click.echo(f"Forwarding {forward} -> port {forward.remote} in workspace {name}")
        click.echo("Every connection goes through the relay, encrypted to the agent. Press Ctrl-C to stop.")
        closed = asyncio.create_task(session.ssh.wait_closed())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([closed, stopped], return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.close()
        stopped.cancel()
        if not stop.is_set():  # the session ended under us: open_session turns this into the reason why
            raise asyncssh.ConnectionLost("the agent's SSH connection closed")
    click.echo("Stopped forwarding.", err=True)


class _Carrier:
    """Carries each connection accepted on one local port to its port in the workspace."""

    def __init__(self, session: Session, forward: Forward) -> None:
        self.session = session
        self.forward = forward

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            remote_reader, remote_writer = await self.session.ssh.open_connection(WORKSPACE_HOST, self.forward.remote)
        except (asyncssh.ChannelOpenError, asyncssh.Error, OSError) as err:
            click.echo(f"Forward {self.forward}: port {self.forward.remote} in the workspace: {_why(err)}", err=True)
            writer.close()
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_copy(reader, remote_writer))
                group.create_task(_copy(remote_reader, writer))
        except* (OSError, asyncssh.Error) as errors:
            click.echo(f"Forward {self.forward}: a connection to port {self.forward.remote} broke: "
                       f"{errors.exceptions[0]}", err=True)
        finally:
            remote_writer.close()
            writer.close()


async def _copy(source: asyncio.StreamReader | asyncssh.SSHReader[bytes],
                target: asyncio.StreamWriter | asyncssh.SSHWriter[bytes]) -> None:
    """Copy until end of file, then pass the end on; never more than BLOCK unwritten."""
    while data := await source.read(BLOCK):
        target.write(data)
        await target.drain()
    if target.can_write_eof():
        with contextlib.suppress(OSError):
            target.write_eof()


def _why(err: BaseException) -> str:
    reason = str(getattr(err, "reason", "") or err)
    if "refused" in reason.lower() or "111" in reason:
        return "connection refused (nothing listens there)"
    if isinstance(err, asyncssh.ChannelOpenError) and err.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
        return f"the agent refused to open it ({reason})"
    return reason or type(err).__name__
