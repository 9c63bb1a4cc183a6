"""Run one terraform command, streaming its output line by line, interruptible like Ctrl-C.

terraform runs in its own process group so an interrupt reaches it and its providers together;
it dies with the daemon (PR_SET_PDEATHSIG) so a killed daemon leaves no apply running unseen.
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
INTERRUPT_GRACE = 30.0

Emit = Callable[[str, str], None]  # (level, line)


def _die_with_daemon() -> None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _pump(stream: IO[bytes], level: str, lines: queue.Queue[tuple[str, str] | None]) -> None:
    for raw in iter(stream.readline, b""):
        lines.put((level, _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()))
    lines.put(None)


class Interrupted(Exception):
    """terraform was interrupted because the job was canceled or ran out of time."""


def run(args: list[str], cwd: Path, env: dict[str, str], emit: Emit, stop_reason: Callable[[], str | None],
        terraform: str = "terraform") -> int:
    """Run `terraform ARGS`; returns its exit code. Raises Interrupted once stop_reason() names a reason."""
    process = subprocess.Popen([terraform, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               preexec_fn=_die_with_daemon)
    assert process.stdout is not None and process.stderr is not None
    lines: queue.Queue[tuple[str, str] | None] = queue.Queue()
    readers = [threading.Thread(target=_pump, args=(s, lvl, lines), daemon=True)
               for s, lvl in ((process.stdout, "info"), (process.stderr, "error"))]
    for reader in readers:
        reader.start()
    open_streams, reason, deadline = 2, None, 0.0
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
            os.killpg(process.pid, signal.SIGINT)
            deadline = time.monotonic() + INTERRUPT_GRACE
        elif reason is not None and time.monotonic() > deadline:
            emit("warn", f"terraform did not stop within {INTERRUPT_GRACE:.0f}s; killing it.")
            os.killpg(process.pid, signal.SIGKILL)
            deadline = float("inf")
    code = process.wait()
    if reason is not None:
        raise Interrupted(reason)
    return code
