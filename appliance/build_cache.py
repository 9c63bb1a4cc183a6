"""Build-side executables (the provider, the agent) kept in a cache folder, keyed by a digest of their inputs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cached_build(cached: Path, build: Callable[[Path], Path]) -> Path:
    """`cached` if it exists; else `build(scratch)`'s result, renamed to `cached`.

    The build runs in a private folder beside the cache and its result is renamed into place, so a
    concurrent build or a reader never sees half a file.
    """
    if cached.is_file():
        return cached
    cache_dir = cached.parent.parent
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="building-", dir=cache_dir))
    try:
        built = build(scratch)
        cached.parent.mkdir(parents=True, exist_ok=True)
        built.replace(cached)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cached
