"""Reconnecting PTYs on the agent's SSH server: the same shell across detaches, replayed scrollback,
several channels at once, resize, idle expiry, and the exit status on every channel."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import asyncssh
import pytest

from appliance.agent import rpty
from appliance.relay.dial import RPTY_COMMAND_ENV, RPTY_PREFIX
from tests.support.ssh_session import SessionKeys, session_over_socketpair

pytestmark = pytest.mark.integration

KEYS = SessionKeys()
Process = asyncssh.SSHClientProcess[bytes]


class Screen:
    """What one attached channel has received so far."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.text = ""

    async def until(self, pattern: str, within: float = 15.0) -> re.Match[str]:
        async def read() -> re.Match[str]:
            while not (found := re.search(pattern, self.text)):
                chunk = await self.process.stdout.read(4096)
                if not chunk:
                    raise AssertionError(f"the channel closed before {pattern!r}; it showed {self.text!r}")
                self.text += chunk.decode(errors="replace")
            return found
        return await asyncio.wait_for(read(), within)

    def type(self, line: str) -> None:
        self.process.stdin.write(line.encode() + b"\r")


def run(test: Callable[[Path], Awaitable[None]], tmp_path: Path) -> None:
    async def and_hang_up() -> None:
        try:
            await test(tmp_path)
        finally:
            await rpty.shared().close()  # no shell outlives its test

    asyncio.run(asyncio.wait_for(and_hang_up(), 60))


@asynccontextmanager
async def attached(stack: AsyncExitStack, directory: Path, reconnect: str, size: tuple[int, int] = (80, 24),
                   env: dict[str, str] | None = None) -> AsyncIterator[Screen]:
    """A fresh SSH login (as a reload or a second tab makes) attached to `reconnect`."""
    conn = await stack.enter_async_context(session_over_socketpair(KEYS, str(directory)))
    process = await conn.create_process(subsystem=RPTY_PREFIX + reconnect, term_type="xterm-256color",
                                        term_size=size, encoding=None, env=env or {})
    try:
        yield Screen(process)
    finally:
        process.close()


async def _pid(screen: Screen, tag: str) -> str:
    screen.type(f"echo {tag}-$$")
    return (await screen.until(rf"{tag}-(\d+)"))[1]


def test_reattaching_replays_the_scrollback_and_keeps_the_same_shell(tmp_path: Path) -> None:
    async def test(directory: Path) -> None:
        reconnect = str(uuid.uuid4())
        async with AsyncExitStack() as stack:
            async with attached(stack, directory, reconnect) as first:
                first.type("echo marker-$((6*7)) $TERM")
                await first.until("marker-42 xterm-256color")
                pid = await _pid(first, "pid")
            async with attached(stack, directory, reconnect) as again:
                await again.until("marker-42 xterm-256color")  # replayed before anything new is typed
                assert await _pid(again, "again") == pid
    run(test, tmp_path)


def test_two_channels_share_one_shell_and_see_each_others_input(tmp_path: Path) -> None:
    async def test(directory: Path) -> None:
        reconnect = str(uuid.uuid4())
        async with (AsyncExitStack() as stack, attached(stack, directory, reconnect) as one,
                    attached(stack, directory, reconnect) as two):
            one.type("echo from-one-$((1+1))")
            await two.until("from-one-2")
            two.type("echo from-two-$((2+2))")
            await one.until("from-two-4")
    run(test, tmp_path)


def test_a_window_change_resizes_the_terminal(tmp_path: Path) -> None:
    async def test(directory: Path) -> None:
        async with AsyncExitStack() as stack, attached(stack, directory, str(uuid.uuid4()), (100, 30)) as screen:
            screen.type("echo size-$(stty size | tr ' ' x)")
            await screen.until("size-30x100")
            screen.process.change_terminal_size(132, 43)
            screen.type("echo size-$(stty size | tr ' ' x)")
            await screen.until("size-43x132")
    run(test, tmp_path)


def test_when_the_shell_exits_every_channel_gets_its_status(tmp_path: Path) -> None:
    async def test(directory: Path) -> None:
        reconnect = str(uuid.uuid4())
        async with AsyncExitStack() as stack:
            async with attached(stack, directory, reconnect) as one, attached(stack, directory, reconnect) as two:
                await _pid(one, "ready")
                one.type("exit 3")
                results = await asyncio.wait_for(asyncio.gather(one.process.wait(), two.process.wait()), 15)
                assert [r.exit_status for r in results] == [3, 3]
            assert reconnect not in rpty.shared()
    run(test, tmp_path)


def test_a_shell_nobody_attaches_to_is_hung_up_after_the_idle_time(tmp_path: Path) -> None:
    async def test(directory: Path) -> None:
        rpty.shared().idle = 0.3
        reconnect = str(uuid.uuid4())
        async with AsyncExitStack() as stack:
            async with attached(stack, directory, reconnect) as first:
                pid = await _pid(first, "first")
            await asyncio.sleep(0.1)
            assert reconnect in rpty.shared()  # still within the idle time
            for _ in range(100):
                if reconnect not in rpty.shared():
                    break
                await asyncio.sleep(0.1)
            assert reconnect not in rpty.shared()
            async with attached(stack, directory, reconnect) as later:
                assert await _pid(later, "later") != pid
                assert "first-" not in later.text
    run(test, tmp_path)


def test_a_command_runs_instead_of_a_shell(tmp_path: Path) -> None:
    async def test(directory: Path) -> None:
        async with AsyncExitStack() as stack, attached(stack, directory, str(uuid.uuid4()),
                                                       env={RPTY_COMMAND_ENV: "echo app-$((3*3)); exit 4"}) as app:
            await app.until("app-9")
            assert (await asyncio.wait_for(app.process.wait(), 15)).exit_status == 4
    run(test, tmp_path)


def test_a_channel_without_a_pty_is_told_why(tmp_path: Path) -> None:
    async def test(directory: Path) -> None:
        async with session_over_socketpair(KEYS, str(directory)) as conn:
            result = await conn.run(subsystem=RPTY_PREFIX + "x", encoding=None)
            assert result.exit_status == 2
            assert b"needs a PTY" in result.stderr  # type: ignore[operator]
    run(test, tmp_path)
