"""Reconnecting PTYs: shells that outlive the SSH channels attached to them (the web terminal's agent side).

A client opens a session channel with a PTY request and runs subsystem `appliance-rpty:<reconnect id>`
(ADR 0030). The first attach with an id starts a login shell (or the command in the channel's
APPLIANCE_RPTY_COMMAND environment variable) on a new PTY; later attaches with the same id replay its
scrollback and then stream live output, as many at once as like. Input and window changes from any
attached channel go to the shell. A shell nobody is attached to is hung up IDLE_SECONDS after the last
channel left; a shell that exits ends every attached channel with its exit status.

The registry is per event loop (one per agent process), so relay reconnects and new SSH logins find
the shells the earlier ones started.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import signal
import struct
import termios
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from appliance.relay.dial import RPTY_COMMAND_ENV, RPTY_PREFIX

log = logging.getLogger(__name__)

SCROLLBACK_BYTES = 64 << 10  # replayed to a channel that attaches
IDLE_SECONDS = 300.0  # a shell nobody is attached to lives this long after the last channel left
KILL_GRACE = 5.0  # seconds between the hang-up and SIGKILL for a shell that ignores SIGHUP
READ_CHUNK = 64 << 10
TERM = "xterm-256color"
RECONNECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")  # a UUID, or any short token a client picks


class Scrollback:
    """The last `limit` bytes a terminal wrote: a bounded ring over the output stream."""

    def __init__(self, limit: int = SCROLLBACK_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def append(self, data: bytes) -> None:
        self._buffer += data[-self.limit:]
        if (excess := len(self._buffer) - self.limit) > 0:
            del self._buffer[:excess]

    def contents(self) -> bytes:
        return bytes(self._buffer)


@dataclass(frozen=True)
class Launch:
    """How to start a terminal's shell: argv, working directory and environment (TERM is set here)."""

    argv: list[str]
    workdir: str
    env: dict[str, str]


def resize(fd: int, size: tuple[int, int, int, int] | Any) -> None:
    """Set a PTY's window size from an SSH (width, height, pixwidth, pixheight); zeros leave it be."""
    width, height, pixwidth, pixheight = size
    if width and height:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


def take_terminal() -> None:
    """In the child, after setsid: make stdin (the PTY) the controlling terminal, as sshd does."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


Channel = asyncssh.SSHServerProcess[bytes]


@dataclass(eq=False)
class Terminal:
    """One shell on one PTY, its scrollback, and the channels attached to it now."""

    reconnect_id: str
    master: int
    child: asyncio.subprocess.Process
    scrollback: Scrollback
    attached: set[Channel] = field(default_factory=set)
    exited: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    _input: asyncio.StreamWriter | None = None

    def attach(self, channel: Channel) -> None:
        """Replay the scrollback to `channel`, then stream to it; nothing between the two can interleave."""
        channel.stdout.write(self.scrollback.contents())
        self.attached.add(channel)

    def detach(self, channel: Channel) -> None:
        self.attached.discard(channel)

    async def write(self, data: bytes) -> None:
        if self._input is None:
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                                os.fdopen(os.dup(self.master), "wb", 0))
            self._input = asyncio.StreamWriter(transport, protocol, None, loop)
        self._input.write(data)
        await self._input.drain()

    def resize(self, size: tuple[int, int, int, int]) -> None:
        with contextlib.suppress(OSError):
            resize(self.master, size)

    def output(self, data: bytes) -> None:
        """What the shell wrote: into the scrollback and to every attached channel."""
        self.scrollback.append(data)
        for channel in list(self.attached):
            try:
                channel.stdout.write(data)
            except (BrokenPipeError, asyncssh.Error, OSError):  # a channel closing under us: it detaches itself
                self.attached.discard(channel)

    def hang_up(self) -> None:
        """SIGHUP to the shell's process group (a terminal closing), SIGKILL if it is still there later."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, signal.SIGHUP)
        asyncio.get_running_loop().call_later(KILL_GRACE, self._kill)

    def _kill(self) -> None:
        if self.child.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signal.SIGKILL)

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
        with contextlib.suppress(OSError):
            os.close(self.master)


class Terminals:
    """The agent's reconnecting PTYs by reconnect id, each hung up `idle` seconds after its last detach."""

    def __init__(self, idle: float = IDLE_SECONDS, scrollback: int = SCROLLBACK_BYTES) -> None:
        self.idle = idle
        self.scrollback = scrollback
        self._terminals: dict[str, Terminal] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def __contains__(self, reconnect_id: str) -> bool:
        return reconnect_id in self._terminals

    def __len__(self) -> int:
        return len(self._terminals)

    async def attach(self, reconnect_id: str, channel: Channel, launch: Callable[[], Launch],
                     size: tuple[int, int, int, int]) -> Terminal:
        """The live terminal for this id (started with `launch()` if there is none), with `channel` attached."""
        terminal = self._terminals.get(reconnect_id)
        if terminal is None:
            terminal = await self._start(reconnect_id, launch(), size)
        else:
            terminal.resize(size)
        if (timer := self._expiry.pop(reconnect_id, None)) is not None:
            timer.cancel()
        terminal.attach(channel)
        return terminal

    def detach(self, terminal: Terminal, channel: Channel) -> None:
        terminal.detach(channel)
        if not terminal.attached and self._terminals.get(terminal.reconnect_id) is terminal:
            loop = asyncio.get_running_loop()
            self._expiry[terminal.reconnect_id] = loop.call_later(self.idle, self._expire, terminal)

    async def close(self) -> None:
        """Hang up every shell and wait until each has exited (the agent stopping, a test ending)."""
        terminals = list(self._terminals.values())
        for terminal in terminals:
            terminal.hang_up()
        await asyncio.gather(*(t.exited for t in terminals))

    def _expire(self, terminal: Terminal) -> None:
        self._expiry.pop(terminal.reconnect_id, None)
        if not terminal.attached:
            log.info("rpty_expired reconnect_id=%s", terminal.reconnect_id)
            terminal.hang_up()

    async def _start(self, reconnect_id: str, launch: Launch, size: tuple[int, int, int, int]) -> Terminal:
        master, slave = os.openpty()
        resize(master, size)
        try:
            child = await asyncio.create_subprocess_exec(
                *launch.argv, cwd=launch.workdir, env={**launch.env, "TERM": TERM}, stdin=slave, stdout=slave,
                stderr=slave, start_new_session=True, preexec_fn=take_terminal)
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        terminal = Terminal(reconnect_id, master, child, Scrollback(self.scrollback))
        self._terminals[reconnect_id] = terminal
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._readable, terminal)
        task = asyncio.create_task(self._reap(terminal), name=f"rpty-{reconnect_id[:8]}")
        _REAPERS.add(task)
        task.add_done_callback(_REAPERS.discard)
        log.info("rpty_started reconnect_id=%s pid=%s", reconnect_id, child.pid)
        return terminal

    def _readable(self, terminal: Terminal) -> None:
        try:
            data = os.read(terminal.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: nothing holds the PTY's other end any more
            data = b""
        if data:
            terminal.output(data)
        else:
            asyncio.get_running_loop().remove_reader(terminal.master)

    async def _reap(self, terminal: Terminal) -> None:
        """When the shell exits: flush its last output, end every attached channel with its status."""
        status = await terminal.child.wait()
        loop = asyncio.get_running_loop()
        loop.remove_reader(terminal.master)
        with contextlib.suppress(OSError):
            while data := os.read(terminal.master, READ_CHUNK):
                terminal.output(data)
        if self._terminals.get(terminal.reconnect_id) is terminal:
            del self._terminals[terminal.reconnect_id]
        if (timer := self._expiry.pop(terminal.reconnect_id, None)) is not None:
            timer.cancel()
        terminal.close()
        code = status if status >= 0 else 128 - status  # killed by a signal: the shell's convention
        log.info("rpty_exited reconnect_id=%s status=%s", terminal.reconnect_id, code)
        terminal.exited.set_result(code)


_REAPERS: set[asyncio.Task[None]] = set()
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Terminals] = weakref.WeakKeyDictionary()


def shared() -> Terminals:
    """This event loop's registry: every SSH session of one agent process shares its terminals."""
    loop = asyncio.get_running_loop()
    if (terminals := _SHARED.get(loop)) is None:
        terminals = _SHARED[loop] = Terminals()
    return terminals


def reconnect_id(subsystem: str) -> str | None:
    """The id in `appliance-rpty:<id>`, or None when the subsystem is not a (well-formed) rpty one."""
    if not subsystem.startswith(RPTY_PREFIX):
        return None
    candidate = subsystem[len(RPTY_PREFIX):]
    return candidate if RECONNECT_ID.fullmatch(candidate) else None


async def serve(channel: Channel, terminals: Terminals, launch: Callable[[str], Launch]) -> int:
    """Attach `channel` to its terminal until the client leaves (0) or the shell exits (its status).

    `launch(command)` says how to start a new shell; command is "" for a login shell.
    """
    found = reconnect_id(channel.subsystem or "")
    if found is None or not channel.term_type:
        channel.stderr.write(f"{RPTY_PREFIX}<id> needs a PTY and an id of letters, digits and dashes "
                             "(64 at most)\n".encode())
        return 2
    command = (channel.env.get(RPTY_COMMAND_ENV) or "").strip()
    terminal = await terminals.attach(found, channel, lambda: launch(command), channel.term_size)
    pumping: asyncio.Future[Any] = asyncio.ensure_future(_pump_input(channel, terminal))
    try:
        await asyncio.wait([pumping, terminal.exited], return_when=asyncio.FIRST_COMPLETED)
    finally:
        pumping.cancel()
        terminals.detach(terminal, channel)
    return terminal.exited.result() if terminal.exited.done() else 0


async def _pump_input(channel: Channel, terminal: Terminal) -> None:
    with contextlib.suppress(OSError, asyncssh.Error):
        while True:
            try:
                data = await channel.stdin.read(READ_CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                terminal.resize((change.width, change.height, change.pixwidth, change.pixheight))
                continue
            if not data:
                return
            await terminal.write(data)
