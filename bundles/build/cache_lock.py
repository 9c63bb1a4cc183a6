"""One builder at a time per cache folder, so two builds on one machine share a cached artifact.

The baseline rootfs and the base image take minutes to make and are written in place. A second
build (another bundle, a test warming the cache beside a bundle build) that needs the same one
waits for the first instead of writing over it, then finds it made.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def building(folder: Path) -> Iterator[None]:
    """Hold `folder`/.lock (an flock, released if the process dies) while building into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
