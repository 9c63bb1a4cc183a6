"""`appliance ssh WS [-- CMD]`: a shell or a command in a workspace; `--stdio`: OpenSSH's ProxyCommand.

Every byte goes through the relay, SSH end to end between this machine and the agent (ADR 0026).
Without --stdio this CLI is the SSH client (a fresh key certified per session); with --stdio
OpenSSH is, and this process pipes its bytes after a certificate line for the per-user key, having
pinned the agent's host key for OpenSSH to check (ADR 0029).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import Literal

import asyncssh
import click

from appliance.cli.builds import resolve_workspace
from appliance.cli.client import ApiClient, with_client
from appliance.cli.ping import agent_option
from appliance.cli.session_store import CONFIG_DIR_ENV
from appliance.cli.ssh_config import HOST_PREFIX, ensure_client_key, workspace_of, write_known_host
from appliance.errors import OperatorError
from appliance.relay.dial import Session, agent_of, open_session, open_stdio_stream
from appliance.sdk.agents import WorkspaceAgentResponse
from appliance.sdk.workspaces import WorkspaceResponse

CHUNK = 64 << 10
POLL_SECONDS = 1.0  # between looks at an agent that has not connected yet
SPINNER = "|/-\\"


def _use_config_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # Eager, so the client below reads the session from there (the ProxyCommand's environment may differ).
    if value:
        os.environ[CONFIG_DIR_ENV] = value


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("workspace")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--stdio", is_flag=True,
              help="Pipe stdin/stdout to the agent's SSH server, for OpenSSH's ProxyCommand (see config-ssh).")
@click.option("--wait", type=click.Choice(["yes", "no"]), default="yes", show_default=True,
              help="Wait for an agent that has not connected yet; 'no' fails at once.")
@click.option("--config-dir", default=None, metavar="DIR", is_eager=True, expose_value=False,
              callback=_use_config_dir, help=f"The CLI's session and keys folder [env {CONFIG_DIR_ENV}].")
@agent_option
@with_client
def ssh(workspace: str, command: tuple[str, ...], stdio: bool, wait: Literal["yes", "no"], agent: str,
        client: ApiClient) -> None:
    """Open a shell in a workspace, or run COMMAND there (after --) and exit with its exit code."""
    name = workspace_of(workspace)
    agent_id = wait_for_agent(client, resolve_workspace(client, name), agent, wait == "yes")
    if stdio:
        if command:
            raise OperatorError("--stdio takes no command.", "OpenSSH sends the command over the connection.")
        asyncio.run(_stdio(client, agent_id, HOST_PREFIX + name))
        return
    pty = not command and sys.stdin.isatty()
    raise SystemExit(asyncio.run(_interactive(client, agent_id, " ".join(command), pty)))


def wait_for_agent(client: ApiClient, workspace: WorkspaceResponse, name: str, wait: bool) -> str:
    """The agent's id once it is connected; with wait, poll (a spinner on a terminal) until it is."""
    agent_id = agent_of(workspace, name)
    spinner, hinted, waited = itertools.cycle(SPINNER), False, False
    while True:
        found = client.call("GET", f"/api/v2/workspaceagents/{agent_id}", WorkspaceAgentResponse)
        if found.status == "connected":
            break
        if not wait:
            raise OperatorError(f"The agent of workspace {workspace.name} has not connected yet ({found.status}).",
                                "Run again without '--wait no' to wait for it, or check "
                                f"'appliance show {workspace.name}'.")
        if found.troubleshooting_hint and not hinted:
            click.echo(f"The agent is {found.status}: {found.troubleshooting_hint}", err=True)
            hinted = True
        waited = True
        if sys.stderr.isatty():
            click.echo(f"\r{next(spinner)} Waiting for the agent of {workspace.name} to connect...", err=True,
                       nl=False)
        time.sleep(POLL_SECONDS)
    if waited and sys.stderr.isatty():
        click.echo("\r\033[K", err=True, nl=False)  # the spinner's line, cleared
    return agent_id


async def _stdio(client: ApiClient, agent_id: str, alias: str) -> None:
    key = ensure_client_key()
    async with open_stdio_stream(client, agent_id, key) as stream:
        # Before the first byte reaches OpenSSH: it reads known_hosts only once the agent's banner came.
        write_known_host(alias, stream.pairing.agent_ssh_host_key)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def finished() -> None:
            loop.call_soon_threadsafe(done.set)

        stream.sock.setblocking(True)
        for target in (_stdin_to(stream.sock), _to_stdout(stream.sock, finished)):
            threading.Thread(target=target, daemon=True).start()
        await asyncio.wait([asyncio.create_task(done.wait()), stream.pump], return_when=asyncio.FIRST_COMPLETED)


def _stdin_to(sock: socket.socket) -> Callable[[], None]:
    def copy() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(0, CHUNK):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
    return copy


def _to_stdout(sock: socket.socket, finished: Callable[[], None]) -> Callable[[], None]:
    def copy() -> None:
        with contextlib.suppress(OSError):
            while data := sock.recv(CHUNK):
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]
        finished()
    return copy


async def _interactive(client: ApiClient, agent_id: str, command: str, pty: bool) -> int:
    async with open_session(client, agent_id, kind="ssh") as session:
        return await _run(session, command, pty)


async def _run(session: Session, command: str, pty: bool) -> int:
    """The shell or command, with this terminal's input, output, size and TERM; its exit code."""
    options: dict[str, object] = {}
    if pty:
        columns, rows = os.get_terminal_size(sys.stdin.fileno())
        options = {"term_type": os.environ.get("TERM", "xterm-256color"), "term_size": (columns, rows)}
    process = await session.ssh.create_process(command or None, encoding=None, request_pty=pty, **options)
    loop = asyncio.get_running_loop()
    threading.Thread(target=_feed(process, loop, pty), daemon=True).start()
    with _raw_terminal(pty), _follow_window_size(process, loop, pty):
        await asyncio.gather(_copy_out(process.stdout, 1), _copy_out(process.stderr, 2))
        await process.wait_closed()
    return _exit_code(process.returncode)


def _feed(process: asyncssh.SSHClientProcess[bytes], loop: asyncio.AbstractEventLoop, pty: bool) -> Callable[[], None]:
    """Stdin to the remote side from a thread: a blocked read of a terminal must not hold up the exit."""
    async def write(data: bytes) -> None:
        if data:
            process.stdin.write(data)
            await process.stdin.drain()
        elif not pty:
            process.stdin.write_eof()

    def copy() -> None:
        with contextlib.suppress(OSError, RuntimeError, asyncssh.Error):  # RuntimeError: the loop has ended
            while True:
                data = os.read(0, CHUNK)
                asyncio.run_coroutine_threadsafe(write(data), loop).result()
                if not data:
                    return
    return copy


async def _copy_out(reader: asyncssh.SSHReader[bytes], fd: int) -> None:
    while data := await reader.read(CHUNK):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]


def _exit_code(returncode: int | None) -> int:
    """As OpenSSH's ssh: the remote exit status; 128 + N when a signal N ended it; 255 when none came."""
    if returncode is None:
        return 255
    return 128 - returncode if returncode < 0 else returncode


@contextlib.contextmanager
def _raw_terminal(pty: bool) -> Iterator[None]:
    if not pty:
        yield
        return
    saved = termios.tcgetattr(sys.stdin.fileno())
    tty.setraw(sys.stdin.fileno())
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _follow_window_size(process: asyncssh.SSHClientProcess[bytes], loop: asyncio.AbstractEventLoop,
                        pty: bool) -> Iterator[None]:
    if not pty:
        yield
        return

    def resized() -> None:
        columns, rows = os.get_terminal_size(sys.stdin.fileno())
        process.change_terminal_size(columns, rows)

    loop.add_signal_handler(signal.SIGWINCH, resized)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


