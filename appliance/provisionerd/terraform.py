"""Run one terraform command in the sandbox, streaming its output line by line, interruptible like Ctrl-C.

terraform leads its own process group inside the sandbox so an interrupt reaches it and its
providers together; it dies with the daemon (PR_SET_PDEATHSIG, bwrap --die-with-parent) so a
killed daemon leaves no apply running unseen.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO

from appliance.provisionerd.sandbox import Sandbox

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
INTERRUPT_GRACE = 30.0

Emit = Callable[[str, str], None]  # (level, line)


def _pump(stream: IO[bytes], level: str, lines: queue.Queue[tuple[str, str] | None]) -> None:
    for raw in iter(stream.readline, b""):
        lines.put((level, _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()))
    lines.put(None)


class Interrupted(Exception):
    """terraform was interrupted because the job was canceled or ran out of time."""


def run(args: list[str], sandbox: Sandbox, workdir: Path, env: dict[str, str], emit: Emit,
        stop_reason: Callable[[], str | None], terraform: str = "terraform") -> int:
    """Run `terraform ARGS`; returns its exit code. Raises Interrupted once stop_reason() names a reason."""
    with sandbox.launch(workdir, [terraform, *args], env) as launch:
        process = launch.start(sandbox, subprocess.PIPE, subprocess.PIPE)
        launch.started()
        return _follow(process, emit, stop_reason, launch.sandboxed_pid)


def _interrupt(process: subprocess.Popen[bytes], sandboxed: int | None, sig: signal.Signals) -> None:
    """Signal terraform's group inside the sandbox: bwrap itself would die of SIGINT and take terraform along.

    A kill also reaches bwrap, whose death kills everything left in the sandbox.
    """
    groups = [sandboxed] if sandboxed else []
    if sig is signal.SIGKILL or not groups:
        groups.append(process.pid)
    for group in groups:
        with suppress(ProcessLookupError):
            os.killpg(group, sig)


def _follow(process: subprocess.Popen[bytes], emit: Emit, stop_reason: Callable[[], str | None],
            sandboxed_pid: Callable[[], int | None]) -> int:
    assert process.stdout is not None and process.stderr is not None
    lines: queue.Queue[tuple[str, str] | None] = queue.Queue()
    readers = [threading.Thread(target=_pump, args=(s, lvl, lines), daemon=True)
               for s, lvl in ((process.stdout, "info"), (process.stderr, "error"))]
    for reader in readers:
        reader.start()
    open_streams, reason, deadline = 2, None, 0.0
    sandboxed: int | None = None
    while open_streams:
        try:
            item = lines.get(timeout=0.5)
            if item is None:
                open_streams -= 1
            else:
                emit(*item)
        except queue.Empty:
            pass
        if reason is None and (reason := stop_reason()) is not None:
            emit("warn", f"Interrupting terraform: {reason}.")
            sandboxed = sandboxed_pid()
            _interrupt(process, sandboxed, signal.SIGINT)
            deadline = time.monotonic() + INTERRUPT_GRACE
        elif reason is not None and time.monotonic() > deadline:
            emit("warn", f"terraform did not stop within {INTERRUPT_GRACE:.0f}s; killing it.")
            _interrupt(process, sandboxed, signal.SIGKILL)
            deadline = float("inf")
    code = process.wait()
    if reason is not None:
        raise Interrupted(reason)
    return code
