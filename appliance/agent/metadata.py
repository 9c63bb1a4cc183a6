"""Agent metadata: each block's script run every interval, its latest result posted to the control plane."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from appliance.agent.output import clean
from appliance.errors import OperatorError
from appliance.sdk.agents import METADATA_VALUE_CHARS, AgentMetadataDescription, MetadataResult

log = logging.getLogger("appliance.agent.metadata")

MIN_INTERVAL = 1  # seconds: a block with interval 0 must not spin
DEFAULT_TIMEOUT = 10  # seconds, for a block that gives none

Send = Callable[[list[MetadataResult]], Awaitable[None]]


async def collect(block: AgentMetadataDescription, directory: str, env: dict[str, str]) -> MetadataResult:
    """Run the block's script once: stdout is the value; stderr, a failure or a timeout the error."""
    timeout = block.timeout or DEFAULT_TIMEOUT
    try:
        process = await asyncio.create_subprocess_exec(
            "sh", "-c", block.script, cwd=directory, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as err:
        return _result(block, "", f"cannot run the script: {err.strerror or err}")
    try:
        out, err_out = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return _result(block, "", f"timed out after {timeout} s")
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    error = err_out.decode("utf-8", "replace").strip()
    if process.returncode != 0 and not error:
        error = f"exited with status {process.returncode}"
    return _result(block, out.decode("utf-8", "replace").strip(), error)


def _result(block: AgentMetadataDescription, value: str, error: str) -> MetadataResult:
    return MetadataResult(key=block.key, value=clean(value, METADATA_VALUE_CHARS),
                          error=clean(error, METADATA_VALUE_CHARS), collected_at=datetime.now(UTC))


async def report_block(block: AgentMetadataDescription, directory: str, env: dict[str, str], send: Send) -> None:
    """Collect and post one block forever, every `interval` seconds; a failed post waits for the next round."""
    while True:
        result = await collect(block, directory, env)
        try:
            await send([result])
        except OperatorError as err:
            log.warning("metadata_not_sent", extra={"key": block.key, "reason": err.message})
        await asyncio.sleep(max(MIN_INTERVAL, block.interval))


async def report_metadata(blocks: list[AgentMetadataDescription], directory: str, env: dict[str, str],
                          send: Send) -> None:
    """Every block on its own schedule, until cancelled."""
    async with asyncio.TaskGroup() as group:
        for block in blocks:
            group.create_task(report_block(block, directory, env, send), name=f"metadata-{block.key}")
