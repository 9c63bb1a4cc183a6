"""The agent's SSH server on one relayed stream: certificate-only login, shells, exec, SFTP, forwarding.

A client logs in only with an OpenSSH certificate the control plane's user CA signed for principal
= this agent's id (ADR 0026); there are no passwords and no other keys. OpenSSH behind `appliance
ssh --stdio` cannot present a certificate it did not have when it started, so that ProxyCommand
sends the certificate first, as one preamble line, and this connection then accepts the key it
certifies (ADR 0029, appliance/relay/preamble.py). Beside sessions it serves three subsystems
`appliance ping` and `appliance speedtest` use: echo (bytes back as they come), source (bytes until
the client closes) and sink (counts bytes until EOF, then answers the count); and the web terminal's
reconnecting PTYs, `appliance-rpty:<reconnect id>` (rpty.py). Agent forwarding is never offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import socket
import subprocess
from pathlib import Path

import asyncssh

from appliance.agent import rpty
from appliance.agent.rpty import resize, take_terminal
from appliance.relay.dial import CIPHERS, ECHO, RPTY_PREFIX, SINK, SOURCE
from appliance.relay.preamble import PreambleError, certified_key, read_preamble
from appliance.sdk.agents import LOOPBACK_HOSTS

log = logging.getLogger(__name__)

CHUNK = 64 << 10
LOGIN_TIMEOUT = 30.0  # seconds from the stream opening to a completed login


class _Server(asyncssh.SSHServer):
    """Public-key (certificate) authentication only; forwarding to the workspace's own ports only."""

    def password_auth_supported(self) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        return dest_host in LOOPBACK_HOSTS  # ports inside the workspace only

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False


class _Sftp(asyncssh.SFTPServer):
    """SFTP whose relative paths start in the agent's directory, as a shell's do."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], directory: str) -> None:
        super().__init__(chan)
        self._directory = os.fsencode(directory).rstrip(b"/") + b"/"

    def map_path(self, path: bytes) -> bytes:
        return super().map_path(path if path.startswith(b"/") else self._directory + path)

    def exit(self) -> None:
        # As OpenSSH's sftp-server: exit status 0, which scp (SFTP mode since OpenSSH 9.0) requires of ssh.
        with contextlib.suppress(OSError, asyncssh.Error):
            self.channel.exit(0)


def authorized_line(user_ca: str, agent_id: str) -> str:
    """The client key this server trusts: certificates from the CA that name this agent."""
    return f'cert-authority,principals="{agent_id}" {user_ca.strip()}'


async def authorized_keys(sock: socket.socket, user_ca: str, agent_id: str) -> str:
    """What this one connection accepts: the CA line, plus the key a preamble's certificate vouched for."""
    line = authorized_line(user_ca, agent_id)
    preamble = await asyncio.wait_for(read_preamble(sock), LOGIN_TIMEOUT)
    if preamble is None:
        return line
    key = certified_key(preamble, user_ca, agent_id)
    return line + "\n" + key.export_public_key("openssh").decode().strip()


async def serve_session(sock: socket.socket, *, host_key: asyncssh.SSHKey, user_ca: str, agent_id: str,
                        directory: str, env: dict[str, str]) -> None:
    """Serve one SSH connection on a connected socket until it closes; a refused login just returns."""
    workdir = directory if Path(directory).is_dir() else pwd.getpwuid(os.getuid()).pw_dir  # noqa: ASYNC240 (one stat)

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        await _handle(process, workdir, env)

    try:
        trusted = await authorized_keys(sock, user_ca, agent_id)
    except (PreambleError, TimeoutError, OSError) as err:
        log.info("ssh_preamble_refused agent_id=%s reason=%s", agent_id, err)
        sock.close()
        return
    try:
        conn = await asyncssh.run_server(
            sock, server_factory=_Server, server_host_keys=[host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(trusted), agent_forwarding=False,
            password_auth=False, kbdint_auth=False, gss_host=None, encoding=None,
            process_factory=handle, sftp_factory=lambda chan: _Sftp(chan, workdir),
            compression_algs=["none"],  # the payload is mostly already compressed or random; spare the CPU
            encryption_algs=CIPHERS,
            login_timeout=LOGIN_TIMEOUT, keepalive_interval=30)
    except (TimeoutError, asyncssh.Error, OSError) as err:
        log.info("ssh_login_refused agent_id=%s reason=%s", agent_id, err)
        sock.close()
        return
    log.info("ssh_session_opened agent_id=%s user=%s", agent_id, conn.get_extra_info("username"))
    await conn.wait_closed()
    log.info("ssh_session_closed agent_id=%s", agent_id)


async def _handle(process: asyncssh.SSHServerProcess[bytes], workdir: str, env: dict[str, str]) -> None:
    try:
        if process.subsystem in (ECHO, SOURCE, SINK):
            process.exit(await _measure(process, process.subsystem))
        elif process.subsystem and process.subsystem.startswith(RPTY_PREFIX):
            process.exit(await rpty.serve(process, rpty.shared(), lambda command: _launch(command, workdir, env)))
        elif process.subsystem:
            process.stderr.write(f"unknown subsystem {process.subsystem}\n".encode())
            process.exit(1)
        else:
            process.exit(await _run(process, workdir, env))
    except (asyncssh.BreakReceived, asyncssh.ConnectionLost, BrokenPipeError):
        process.close()


async def _measure(process: asyncssh.SSHServerProcess[bytes], kind: str) -> int:
    """The subsystems behind ping and speedtest."""
    if kind == SOURCE:
        block = os.urandom(CHUNK)  # random, so no layer below could shrink it
        while not process.channel.is_closing():
            process.stdout.write(block)
            await process.stdout.drain()
        return 0
    received = 0
    while data := await process.stdin.read(CHUNK):
        received += len(data)
        if kind == ECHO:
            process.stdout.write(data)
            await process.stdout.drain()
    if kind == SINK:
        process.stdout.write(f"{received}\n".encode())
    return 0


def _argv(command: str) -> list[str]:
    """The user's shell running `command`, or a login shell when there is none."""
    shell = os.environ.get("SHELL") or pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    return [shell, "-c", command] if command else [shell, "-l"]


def _command_line(process: asyncssh.SSHServerProcess[bytes]) -> list[str]:
    return _argv(process.command or "")


def _environment(process: asyncssh.SSHServerProcess[bytes] | None, env: dict[str, str]) -> dict[str, str]:
    merged = {**os.environ, **env}
    if process is not None and process.term_type:
        merged["TERM"] = process.term_type
    merged["SSH_CONNECTION"] = "relay"  # tools that look for it should know they are remote
    return merged


def _launch(command: str, workdir: str, env: dict[str, str]) -> rpty.Launch:
    """A reconnecting PTY's shell: as a session's, but owned by no channel (rpty sets TERM)."""
    return rpty.Launch(_argv(command), workdir, _environment(None, env))


async def _run(process: asyncssh.SSHServerProcess[bytes], workdir: str, env: dict[str, str]) -> int:
    """A shell or a command, with a PTY when the client asked for one."""
    if process.term_type:
        return await _run_with_pty(process, workdir, env)
    child = await asyncio.create_subprocess_exec(
        *_command_line(process), cwd=workdir, env=_environment(process, env), start_new_session=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdin and child.stdout and child.stderr
    feed = asyncio.create_task(_feed(process, child.stdin))
    await asyncio.gather(_drain_into(child.stdout, process.stdout), _drain_into(child.stderr, process.stderr))
    code = await child.wait()
    feed.cancel()
    return code


async def _feed(process: asyncssh.SSHServerProcess[bytes], stdin: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await process.stdin.read(CHUNK):
            stdin.write(data)
            await stdin.drain()
        stdin.close()


async def _drain_into(source: asyncio.StreamReader, target: asyncssh.SSHWriter[bytes]) -> None:
    while data := await source.read(CHUNK):
        target.write(data)
        await target.drain()


async def _run_with_pty(process: asyncssh.SSHServerProcess[bytes], workdir: str, env: dict[str, str]) -> int:
    master, slave = os.openpty()
    resize(master, process.term_size)
    child = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the wait happens in a thread below)
        _command_line(process), cwd=workdir, env=_environment(process, env), stdin=slave, stdout=slave,
        stderr=slave, start_new_session=True, preexec_fn=take_terminal)
    os.close(slave)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(master, "rb", 0))
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                        os.fdopen(os.dup(master), "wb", 0))
    feed = asyncio.create_task(_feed_pty(process, asyncio.StreamWriter(transport, protocol, None, loop), master))
    with contextlib.suppress(OSError):  # EIO once the last process holding the terminal exits
        await _drain_into(reader, process.stdout)
    code = await asyncio.to_thread(child.wait)
    feed.cancel()
    return code


async def _feed_pty(process: asyncssh.SSHServerProcess[bytes], terminal: asyncio.StreamWriter, master: int) -> None:
    with contextlib.suppress(OSError):
        while True:
            try:
                data = await process.stdin.read(CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                resize(master, (change.width, change.height, change.pixwidth, change.pixheight))
                continue
            if not data:
                return
            terminal.write(data)
            await terminal.drain()
