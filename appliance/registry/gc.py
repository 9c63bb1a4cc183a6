"""Garbage collection with the registry read-only (docs/adr/0018): switch, collect, switch back, report.

Distribution's collector marks from tags and sweeps the rest; a push that lands between mark and
sweep loses blobs (distribution#3045). So the running registry is restarted with
storage.maintenance.readonly on (pushes get 405, pulls go on), `docker-registry garbage-collect
--delete-untagged` runs, and the registry is restarted writable, even when the collection fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.errors import OperatorError
from appliance.registry.config import EXECUTABLE, INSTALL_HINT, set_read_only, storage_root
from appliance.registry.process import is_listening

_RESTART_TIMEOUT = 30.0
_DELETED_BLOB = re.compile(r"blob eligible for deletion")
_DELETED_MANIFEST = re.compile(r"manifest eligible for deletion")


@dataclass(frozen=True)
class GcReport:
    blobs_deleted: int
    manifests_deleted: int
    bytes_before: int
    bytes_after: int
    dry_run: bool

    @property
    def bytes_freed(self) -> int:
        return self.bytes_before - self.bytes_after


class Switch(Protocol):
    """How to restart the running registry so it rereads its config file."""

    def is_running(self) -> bool: ...
    def restart(self) -> None: ...


def _wait_listening(host: str, port: int, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _RESTART_TIMEOUT
    while time.monotonic() < deadline:
        if ready() and is_listening(host, port):
            return
        time.sleep(0.1)
    raise OperatorError(f"The registry did not come back on {host}:{port} within {_RESTART_TIMEOUT:.0f}s.",
                        "Check the registry's log, and that 'appliance server' (or its unit) is running.")


@dataclass(frozen=True)
class EmbeddedSwitch:
    """The registry is a child of `appliance server`: SIGTERM it, and the server's watcher starts it again."""

    pid_file: Path
    host: str
    port: int

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if EXECUTABLE.encode() in cmdline else None

    def is_running(self) -> bool:
        return self._pid() is not None

    def restart(self) -> None:
        old = self._pid()
        if old is None:
            raise OperatorError("The embedded registry stopped while garbage collection ran.",
                                "Restart 'appliance server', then run 'appliance registry gc' again.")
        os.kill(old, signal.SIGTERM)
        _wait_listening(self.host, self.port, lambda: self._pid() not in (None, old))


@dataclass(frozen=True)
class SystemdSwitch:
    """The installed registry is a systemd unit (the `registry` role's appliance-registry.service)."""

    unit: str
    host: str
    port: int

    def is_running(self) -> bool:
        if shutil.which("systemctl") is None:
            return False
        return subprocess.run(["systemctl", "is-active", "--quiet", self.unit], check=False).returncode == 0

    def restart(self) -> None:
        done = subprocess.run(["systemctl", "restart", self.unit], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise OperatorError(f"Could not restart {self.unit}: {done.stderr.strip() or done.returncode}.",
                                f"See 'journalctl -u {self.unit}'.")
        _wait_listening(self.host, self.port, lambda: True)


@contextmanager
def read_only(config_file: Path, switch: Switch) -> Iterator[bool]:
    """Keep the registry read-only for the block; yields whether a running registry was switched."""
    running = switch.is_running()
    set_read_only(config_file, True)
    try:
        if running:
            switch.restart()
        yield running
    finally:
        set_read_only(config_file, False)
        if running:
            switch.restart()


def _size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file()) if root.is_dir() else 0


def collect(config_file: Path, dry_run: bool = False) -> GcReport:
    """Run Distribution's collector over the storage config_file names; count what it deleted."""
    executable = shutil.which(EXECUTABLE)
    if executable is None:
        raise OperatorError(f"The container registry ({EXECUTABLE}) is not installed.", INSTALL_HINT)
    root = storage_root(config_file)
    before = _size(root)
    argv = [executable, "garbage-collect", "--delete-untagged", *(["--dry-run"] if dry_run else []), str(config_file)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:]) or f"status {done.returncode}"
        raise OperatorError(f"Registry garbage collection failed: {last}",
                            f"Check the storage under {root}; the registry was switched back to read-write.")
    output = done.stdout + done.stderr
    return GcReport(len(_DELETED_BLOB.findall(output)), len(_DELETED_MANIFEST.findall(output)), before, _size(root),
                    dry_run)
