"""Rootful podman through its CLI (`--format json`), with the service's own containers.conf.

Every object the service creates carries the dev.appliance.* labels and a podman name derived from
its workspace (`ws-<workspace id>-<name>`), so one workspace's names never meet another's.
Secrets never reach an argument list (which /proc shows every user): registry credentials go in a
0600 auth file, environment values in a 0600 env file, both removed once podman has read them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import OperatorError
from appliance.sdk.runtime import LABEL_WORKSPACE

EXECUTABLE = "podman"
OCI_RUNTIME = "runc"  # crun fails on these hosts' cgroups (hybrid mode): docs/adr/0019
INSTALL_HINT = "Install them as root: apt-get install podman runc."
# podman fails on these hosts without both settings (../shared/PLATFORM.md); the host's own file is never read.
CONTAINERS_CONF = f'[engine]\nruntime = "{OCI_RUNTIME}"\n\n[containers]\ndefault_ulimits = []\n'
_TIMEOUT = 600.0  # a pull of a large image over loopback
_STOP_SECONDS = 10  # a container's grace period between SIGTERM and SIGKILL on delete
_LOG_LINES = 20


class PodmanMissing(OperatorError):
    """podman or runc is not installed, so workspaces cannot run containers."""


class PodmanFailed(Exception):
    """A podman command exited non-zero; `stderr` holds what it said."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"podman {' '.join(args[:2])} exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr.strip()

    def last_lines(self, count: int = _LOG_LINES) -> str:
        return "\n".join(self.stderr.splitlines()[-count:])


def podman_name(workspace_id: str, name: str) -> str:
    return f"ws-{workspace_id}-{name}"


@dataclass(frozen=True)
class RegistryAccess:
    """How podman reaches the internal registry: over TLS trusting only `cert_dir`, or plain http on loopback."""

    address: str       # host:port
    is_tls: bool
    cert_dir: Path     # holds ca.crt, the internal CA root


@dataclass(frozen=True)
class Podman:
    executable: str
    state_dir: Path  # containers.conf, the CA for pulls, short-lived auth and env files

    @property
    def conf(self) -> Path:
        return self.state_dir / "containers.conf"

    def environment(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CONTAINERS_CONF": str(self.conf)}

    async def run(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            self.executable, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.environment())
        try:
            out, err = await asyncio.wait_for(process.communicate(), _TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise PodmanFailed(list(args), -1, f"timed out after {_TIMEOUT:.0f}s") from None
        if process.returncode != 0:
            raise PodmanFailed(list(args), process.returncode or -1, err.decode(errors="replace"))
        return out.decode(errors="replace")

    def run_sync(self, *args: str) -> str:
        done = subprocess.run([self.executable, *args], capture_output=True, text=True, env=self.environment(),
                              timeout=_TIMEOUT, check=False)
        if done.returncode != 0:
            raise PodmanFailed(list(args), done.returncode, done.stderr)
        return done.stdout

    async def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        """`podman KIND inspect NAME` as a dict, or None when there is no such object."""
        try:
            found = json.loads(await self.run(kind, "inspect", "--format", "json", name))
        except PodmanFailed as err:
            if "no such" in err.stderr.lower():
                return None
            raise
        return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else None

    async def pull(self, image: str, registry: RegistryAccess, password: str) -> None:
        """Pull `image` as user `workspace` with the build's credential (docs/adr/0019): pull rights only."""
        auth = self._secret_file("auth", json.dumps({"auths": {registry.address: {
            "auth": base64.b64encode(f"workspace:{password}".encode()).decode()}}}))
        tls = ["--cert-dir", str(registry.cert_dir)] if registry.is_tls else ["--tls-verify=false"]
        try:
            await self.run("pull", "--quiet", "--authfile", str(auth), *tls, image)
        finally:
            auth.unlink(missing_ok=True)

    async def create_container(self, args: list[str], env: Mapping[str, str]) -> None:
        """`podman create ARGS` with `env` given through a 0600 file rather than the argument list."""
        env_file = self._secret_file("env", "".join(f"{key}={value}\n" for key, value in env.items()))
        try:
            await self.run("create", "--env-file", str(env_file), *args)
        finally:
            env_file.unlink(missing_ok=True)

    async def logs(self, name: str) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                self.executable, "logs", "--tail", str(_LOG_LINES), name, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=self.environment())
            out, _ = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            return ""
        return out.decode(errors="replace").strip()

    async def remove_container(self, name: str) -> None:
        await self.run("rm", "--force", "--ignore", "--time", str(_STOP_SECONDS), name)

    def _secret_file(self, kind: str, content: str) -> Path:
        folder = self.state_dir / "secrets"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"{kind}-{secrets.token_hex(8)}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
        return path


def find_podman(state_dir: Path) -> Podman:
    """The podman to drive, with the service's containers.conf written; PodmanMissing says how to install it."""
    executable = shutil.which(EXECUTABLE)
    runtime = shutil.which(OCI_RUNTIME) or shutil.which(OCI_RUNTIME, path="/usr/sbin:/sbin")
    missing = [name for name, path in ((EXECUTABLE, executable), (OCI_RUNTIME, runtime)) if path is None]
    if executable is None or missing:
        verb = "is" if len(missing) == 1 else "are"
        raise PodmanMissing(f"Workspaces cannot run containers: {' and '.join(missing)} {verb} not installed.",
                            INSTALL_HINT)
    # Traversable by all: the socket may live here, and terraform connects under an arbitrary uid.
    # Secrets go in secrets/ (0700); the rest is public (containers.conf, the CA root).
    state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    podman = Podman(executable, state_dir)
    podman.conf.write_text(CONTAINERS_CONF)
    return podman


def install_ca(state_dir: Path, root_pem: bytes) -> Path:
    """A --cert-dir holding only the internal CA root as ca.crt: what podman trusts for the registry."""
    cert_dir = state_dir / "registry-certs"
    cert_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    (cert_dir / "ca.crt").write_bytes(root_pem)
    return cert_dir


@dataclass(frozen=True)
class Owned:
    """A container or volume carrying the service's labels: what `appliance doctor` checks against workspaces."""

    kind: str  # "container" or "volume"
    podman_name: str
    workspace_id: str
    labels: dict[str, str]


def list_owned(podman: Podman) -> list[Owned]:
    """Every container and volume with a dev.appliance.workspace-id label, running or not."""
    containers = json.loads(podman.run_sync("ps", "--all", "--filter", f"label={LABEL_WORKSPACE}",
                                            "--format", "json") or "[]")
    volumes = json.loads(podman.run_sync("volume", "ls", "--filter", f"label={LABEL_WORKSPACE}",
                                         "--format", "json") or "[]")
    found = [Owned("container", str(item["Names"][0]), str(item["Labels"][LABEL_WORKSPACE]), dict(item["Labels"]))
             for item in containers]
    found += [Owned("volume", str(item["Name"]), str(item["Labels"][LABEL_WORKSPACE]), dict(item["Labels"]))
              for item in volumes]
    return found


def remove_owned(podman: Podman, found: Owned) -> None:
    """Remove one object list_owned found (`appliance doctor --fix`): a container stopped first, a volume forced."""
    if found.kind == "container":
        podman.run_sync("rm", "--force", "--ignore", "--time", str(_STOP_SECONDS), found.podman_name)
    else:
        podman.run_sync("volume", "rm", "--force", found.podman_name)
