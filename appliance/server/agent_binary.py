"""Build side: the workspace agent as one PyInstaller executable, cached by a digest of its inputs.

`appliance agent package OUT_DIR` writes OUT_DIR/appliance-agent-linux-amd64 (the bundle builder
calls it); `appliance server` with embedded PostgreSQL builds it into agent_binary_dir in the
background at start, as it builds the base image, and GET /bin/appliance-agent-linux-amd64 serves it.
--onefile, unlike the provider's --onedir: the agent starts once per workspace start, and one file is
what the init script can download. The cache works as the provider's (appliance/provider/packaging.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import appliance
from appliance import __version__
from appliance.api.agent_binary import BINARY_NAME, binary_path, building_marker
from appliance.build_cache import cached_build
from appliance.children import die_with_parent
from appliance.config import ServerConfig
from appliance.errors import OperatorError
from appliance.provider.packaging import distribution_version

log = logging.getLogger(__name__)

SOURCE_ROOT = Path(appliance.__file__).resolve().parent.parent
ENTRY = SOURCE_ROOT / "appliance" / "agent" / "__main__.py"
# Everything of ours the agent imports (relative to SOURCE_ROOT): a change in any of it rebuilds the agent.
SOURCES = ("appliance/__init__.py", "appliance/errors.py", "appliance/logs.py", "appliance/agent", "appliance/sdk",
           "appliance/relay", "operator_errors")
LIBRARIES = ("pyinstaller", "pydantic", "requests", "urllib3", "asyncssh", "cryptography", "pynacl", "h11")
_BUILD_TIMEOUT = 900.0


def inputs_digest() -> str:
    """Changes whenever the built agent could: our sources, the Python and libraries it bundles, PyInstaller."""
    libraries = " ".join(f"{name} {distribution_version(name)}" for name in LIBRARIES)
    hasher = hashlib.sha256(f"agent {__version__} python {platform.python_version()} {libraries}".encode())
    for source in (*SOURCES, Path(__file__).relative_to(SOURCE_ROOT).as_posix()):  # this file: the build's flags
        path = SOURCE_ROOT / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            hasher.update(file.relative_to(SOURCE_ROOT).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return hasher.hexdigest()[:16]


def default_cache_dir(config: ServerConfig) -> Path:
    """Beside the provider's cache: ~/.cache/appliance/agent."""
    return config.provider_cache_dir.parent / "agent"


def cache_path(cache_dir: Path) -> Path:
    return cache_dir / inputs_digest() / BINARY_NAME


def cached_binary(cache_dir: Path) -> Path:
    """The executable for the current sources, built into `cache_dir` unless already there."""
    return cached_build(cache_path(cache_dir), _pyinstaller)


def _pyinstaller(scratch: Path) -> Path:
    if shutil.which("objdump") is None:
        raise OperatorError("Cannot build the workspace agent: objdump is not on PATH (PyInstaller needs it).",
                            "Install it (apt-get install binutils) and try again.")
    argv = [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--clean", "--log-level", "WARN",
            "--name", BINARY_NAME, "--distpath", str(scratch / "dist"), "--workpath", str(scratch / "build"),
            "--specpath", str(scratch), "--paths", str(SOURCE_ROOT),
            # asyncssh loads its ciphers, key types and compressors by name at run time.
            "--collect-submodules", "asyncssh", *_version_source(), str(ENTRY)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=_BUILD_TIMEOUT,
                                preexec_fn=die_with_parent(signal.SIGTERM))
    except subprocess.TimeoutExpired as err:
        raise OperatorError(f"PyInstaller did not build the workspace agent within {_BUILD_TIMEOUT:.0f} s.",
                            "The machine may be overloaded; try again.") from err
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-4:])
        hint = ("Install the build extra (pip install 'appliance[build]'; in a source checkout: make run) and try "
                "again." if "No module named PyInstaller" in result.stderr else "See PyInstaller's message above.")
        raise OperatorError(f"PyInstaller failed to build the workspace agent: {tail}", hint)
    return scratch / "dist" / BINARY_NAME


def _version_source() -> list[str]:
    """Where the frozen agent finds the release version it reports (appliance/__init__.py reads either)."""
    pyproject = SOURCE_ROOT / "pyproject.toml"
    if pyproject.is_file():  # a source checkout: an editable install's metadata may name an older version
        return ["--add-data", f"{pyproject}:."]
    return ["--copy-metadata", "appliance"]


def package_agent(out_dir: Path, cache_dir: Path) -> Path:
    """Write OUT_DIR/appliance-agent-linux-amd64 (built, or from the cache) and return its path."""
    cached = cached_binary(cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / BINARY_NAME
    partial = target.with_name(f".{BINARY_NAME}.partial")
    shutil.copyfile(cached, partial)
    partial.chmod(0o755)
    partial.replace(target)  # a download meanwhile gets the old file or the new one, never half of one
    return target


class AgentBinary:
    """`appliance server`: build (or copy from the cache) the agent into agent_binary_dir on a thread."""

    def __init__(self, config: ServerConfig, say: Callable[[str], None]) -> None:
        self._config, self._say = config, say
        self.thread = threading.Thread(target=self._run, name="agent-binary", daemon=True)

    @property
    def needs_build(self) -> bool:
        return not cache_path(default_cache_dir(self._config)).is_file()

    def start(self) -> None:
        marker = building_marker(self._config)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(os.getpid()))
        except OSError as err:
            self._say(f"Workspace agent: cannot write to {marker.parent} ({err.strerror}).")
            return
        self.thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            path = package_agent(self._config.agent_binary_dir, default_cache_dir(self._config))
        except OperatorError as err:
            log.error("agent_binary_unavailable", extra={"reason": err.message, "hint": err.hint})
            self._say(f"Workspace agent: {err.message} {err.hint}")
            return
        except OSError as err:
            log.error("agent_binary_unavailable", extra={"reason": str(err)})
            self._say(f"Workspace agent: cannot write {binary_path(self._config)} ({err.strerror or err}).")
            return
        finally:
            building_marker(self._config).unlink(missing_ok=True)
        log.info("agent_binary_ready", extra={"path": str(path), "seconds": round(time.monotonic() - started, 1)})
        self._say(f"Workspace agent ready: {path}")
