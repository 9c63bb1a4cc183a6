"""The startup script: `sh -c` in the agent's directory, its output shipped to the control plane as it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from appliance.agent.backoff import Backoff
from appliance.agent.output import LineSplitter
from appliance.errors import OperatorError
from appliance.sdk.agents import AgentLogLine, LifecycleState

log = logging.getLogger("appliance.agent.startup")
Level = Literal["debug", "info", "warn", "error"]

BATCH_LINES = 100  # lines per PATCH .../me/logs: small, so the console shows output while the script runs
FLUSH_SECONDS = 0.25  # how long a line may wait for others to share its request
CHUNK = 65536
DRAIN_SECONDS = 1.0  # output read after the script exits, from children it left running


class LogShipper:
    """Sends lines to the control plane in order, in small batches; a failed batch is retried, not dropped."""

    def __init__(self, send: Callable[[list[AgentLogLine]], Awaitable[None]]) -> None:
        self._send = send
        self._queue: asyncio.Queue[AgentLogLine | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="log-shipper")

    def put(self, output: str, level: Level = "info") -> None:
        self._queue.put_nowait(AgentLogLine(created_at=datetime.now(UTC), output=output, level=level))

    async def close(self) -> None:
        """Send what is queued, then stop."""
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = asyncio.get_running_loop().time() + FLUSH_SECONDS
            while len(batch) < BATCH_LINES:
                try:
                    line = await asyncio.wait_for(self._queue.get(), deadline - asyncio.get_running_loop().time())
                except TimeoutError:
                    break
                if line is None:
                    closing = True
                    break
                batch.append(line)
            await self._deliver(batch)

    async def _deliver(self, batch: list[AgentLogLine]) -> None:
        backoff = Backoff(first=1.0, cap=30.0)
        while True:
            try:
                await self._send(batch)
                return
            except OperatorError as err:
                delay = backoff.next_delay()
                log.warning("startup_logs_not_sent", extra={"lines": len(batch), "reason": err.message,
                                                            "retry_in": round(delay, 1)})
                await asyncio.sleep(delay)


@dataclass(frozen=True)
class Script:
    source: str
    directory: str
    env: dict[str, str]
    timeout_seconds: int  # 0: no timeout


async def run_startup_script(script: Script, shipper: LogShipper,
                             on_timeout: Callable[[], Awaitable[None]]) -> LifecycleState:
    """Run the script to its end: ready on exit 0, start_error otherwise; `on_timeout` once the timeout passes.

    As Coder's agent does, a script past its timeout is not killed: the workspace reports start_timeout
    and then its final state when the script ends.
    """
    if not script.source.strip():
        return "ready"
    try:
        process = await asyncio.create_subprocess_exec(
            "sh", "-c", script.source, cwd=script.directory, env=script.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as err:
        shipper.put(f"Cannot start the startup script in {script.directory}: {err.strerror or err}", "error")
        return "start_error"
    log.info("startup_script_started", extra={"pid": process.pid, "directory": script.directory})
    timed_out = False
    pumping = asyncio.ensure_future(_pump(process, shipper))
    exited = asyncio.ensure_future(process.wait())
    try:
        try:
            await asyncio.wait_for(asyncio.shield(exited), script.timeout_seconds or None)
        except TimeoutError:
            timed_out = True
            await on_timeout()
        status = await exited
        # A child the script left in the background may hold the pipe open: take what is written, then stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pumping), DRAIN_SECONDS)
    except asyncio.CancelledError:
        _kill_group(process.pid)
        raise
    finally:
        pumping.cancel()
    log.info("startup_script_exited", extra={"status": status, "timed_out": timed_out})
    if status != 0:
        shipper.put(f"The startup script exited with status {status}.", "error")
        return "start_error"
    return "ready"


async def _pump(process: asyncio.subprocess.Process, shipper: LogShipper) -> None:
    assert process.stdout is not None
    splitter = LineSplitter()
    while chunk := await process.stdout.read(CHUNK):
        for line in splitter.feed(chunk):
            shipper.put(line)
    for line in splitter.close():
        shipper.put(line)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
