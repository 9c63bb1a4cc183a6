"""Run Distribution (`docker-registry serve CONFIG`) as a child process: start, watch, restart, stop.

The child gets SIGTERM from the kernel if the server dies (even by SIGKILL), so no registry outlives
it. Distribution rereads nothing after start, so a new certificate or maintenance mode takes a restart:
`restart()` from the server, or SIGTERM to the pid in pid_file from `appliance registry gc`, after
which the watcher starts it again from the (rewritten) config file.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.children import die_with_parent
from appliance.errors import OperatorError
from appliance.registry.config import EXECUTABLE, INSTALL_HINT

log = logging.getLogger(__name__)

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0
_RESTART_DELAY = 1.0
_RESTART_ATTEMPTS = 5  # 1 + 2 + 4 + 8 + 16 s apart


class RegistryError(OperatorError):
    """The registry could not be started."""


def is_listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class RegistryProcess:
    config_file: Path
    log_file: Path
    host: str
    port: int
    tls: bool = False
    pid_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        with self._lock:
            self._stopping.clear()
            self._launch()
            self._wait_until_listening()

    def _launch(self) -> None:
        executable = shutil.which(EXECUTABLE)
        if executable is None:
            raise RegistryError(f"The container registry ({EXECUTABLE}) is not installed.", INSTALL_HINT)
        if is_listening(self.host, self.port):
            raise RegistryError(f"Cannot start the registry: something already listens on {self.host}:{self.port}.",
                                "Stop it, or set registry_address (APPLIANCE_REGISTRY_ADDRESS) to a free port.")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as output:
            self._process = subprocess.Popen([executable, "serve", str(self.config_file)],
                                             stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                             preexec_fn=die_with_parent(signal.SIGTERM))
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self._process.pid}\n")

    def _wait_until_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RegistryError(f"The registry exited at start (status {self._process.returncode}).",
                                    f"See its log: {self.log_file}.")
            if is_listening(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RegistryError(f"The registry did not listen on {self.host}:{self.port} within {_START_TIMEOUT:.0f}s.",
                            f"See its log: {self.log_file}.")

    def watch(self) -> None:
        """Restart the child whenever it exits unasked (a crash, or `appliance registry gc` switching mode)."""
        threading.Thread(target=self._watch, name="registry-watch", daemon=True).start()

    def _watch(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            status = process.wait()
            # A start that failed is tried again, waiting longer each time, as systemd's Restart= would.
            if self._stopping.wait(_RESTART_DELAY * 2 ** failures):
                return
            with self._lock:
                if self._process is not process or self._stopping.is_set():
                    continue  # restarted or stopped on purpose meanwhile
                log.warning("registry_exited", extra={"status": status, "log": str(self.log_file)})
                try:
                    self._launch()
                    self._wait_until_listening()
                    failures = 0
                except RegistryError as err:
                    failures += 1
                    log.error("registry_restart_failed",
                              extra={"reason": err.message, "attempt": failures, "log": str(self.log_file)})
                    if failures >= _RESTART_ATTEMPTS:
                        return

    def restart(self) -> None:
        """Stop and start again, rereading the config file and the certificate it names."""
        with self._lock:
            self._terminate()
            self._launch()
            self._wait_until_listening()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._terminate()
            if self.pid_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.pid_file.unlink()
