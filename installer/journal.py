"""The upgrade journal: which steps of an upgrade or rollback ran, how far, and what undoes them.

One JSON file (paths.journal), rewritten atomically after every change of state: a temporary
file, fsync, rename over the journal, fsync the folder. A run killed at any instant therefore
leaves either the old or the new journal, never half of one, and the next run reads exactly how
far it got. A step is `started` before its work begins and `done` after it finished, so a step
killed midway is `started`: recovery undoes it like a finished one, which is why every undo must
be idempotent (safe on work done partly, fully or not at all).

A flock on paths.installer_state/lock keeps two installer runs apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from installer.errors import InstallError
from installer.paths import HostPaths

StepState = Literal["pending", "started", "done", "undone", "failed"]
Outcome = Literal["running", "rolling-back", "succeeded", "rolled-back", "failed"]
FINISHED: tuple[Outcome, ...] = ("succeeded", "rolled-back", "failed")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StepRecord:
    name: str
    state: StepState = "pending"
    seconds: float = 0.0
    undo_seconds: float = 0.0
    error: str | None = None

    @property
    def touched(self) -> bool:
        """Its work may have changed the host (begun, finished or failed partway): recovery undoes it."""
        return self.state in ("started", "done", "failed")


@dataclass
class Journal:
    kind: str                      # "upgrade" or "rollback"
    from_version: str | None
    to_version: str
    steps: list[StepRecord]
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    outcome: Outcome = "running"
    failed_step: str | None = None
    # What later steps and recovery need: the bundle path, manifest digest, backup folder, plan, ...
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, kind: str, from_version: str | None, to_version: str, steps: list[str],
            data: dict[str, Any] | None = None) -> Journal:
        return cls(kind, from_version, to_version, [StepRecord(name) for name in steps], data=dict(data or {}))

    @property
    def finished(self) -> bool:
        return self.outcome in FINISHED

    def step(self, name: str) -> StepRecord:
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(name)

    def to_undo(self) -> list[StepRecord]:
        """The steps whose work may be on the host, last first: the order recovery undoes them in."""
        return [record for record in reversed(self.steps) if record.touched]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Journal:
        steps = [StepRecord(**record) for record in data.pop("steps")]
        return cls(steps=steps, **data)


def save(journal: Journal, paths: HostPaths) -> None:
    """Replace the journal on disk in one rename, durable before this returns.

    World-readable, in a folder others may traverse but not list: the console (never root) shows the
    steps as they go (docs/adr/0039); the journal holds no secret, only versions, paths and the plan.
    """
    write_atomically(paths.journal, json.dumps(journal.to_json(), indent=1).encode() + b"\n", 0o644)
    paths.installer_state.chmod(0o711)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Temp file in the same folder, fsync, rename over `path`, fsync the folder: old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(paths: HostPaths) -> Journal | None:
    """The journal on disk, or None when no upgrade or rollback ever ran."""
    try:
        data = json.loads(paths.journal.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:  # cannot happen with atomic writes; someone edited it
        raise InstallError(f"The journal {paths.journal} is not valid JSON: {err}.",
                           "Restore it from the installer log, or move it aside after checking the host.") from err
    return Journal.from_json(data)


def unfinished(paths: HostPaths) -> Journal | None:
    journal = load(paths)
    return journal if journal is not None and not journal.finished else None


@contextmanager
def installer_lock(paths: HostPaths) -> Iterator[None]:
    """Hold the installer's lock for the block; refuse at once if another run holds it."""
    paths.installer_state.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(paths.installer_state / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise InstallError("another appliance-installer run is in progress on this host.",
                               "Wait for it to finish (see /var/log/appliance/installer.log), then run this again.",
                               step="Lock") from err
        yield
    finally:
        os.close(fd)  # closing releases the lock; a killed run's lock goes with its process


@dataclass
class Timer:
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 2)
