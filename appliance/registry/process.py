"""Run Distribution (`docker-registry serve CONFIG`) as a child process: start, wait until it answers, stop."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import OperatorError
from appliance.registry.config import EXECUTABLE, INSTALL_HINT

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class RegistryError(OperatorError):
    """The registry could not be started."""


@dataclass
class RegistryProcess:
    config_file: Path
    log_file: Path
    host: str
    port: int
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        executable = shutil.which(EXECUTABLE)
        if executable is None:
            raise RegistryError(f"The container registry ({EXECUTABLE}) is not installed.", INSTALL_HINT)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen([executable, "serve", str(self.config_file)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RegistryError(f"The registry exited at start (status {self._process.returncode}).",
                                    f"See its log: {self.log_file}.")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RegistryError(f"The registry did not listen on {self.host}:{self.port} within {_START_TIMEOUT:.0f}s.",
                            f"See its log: {self.log_file}.")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
