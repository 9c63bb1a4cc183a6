"""terraform's sandbox: bubblewrap under a uid of its own, seeing only the job dir, the mirror and its config.

Every terraform command runs as `bwrap` started under the sandbox uid (never root, never the
daemon's own uid), in new user, mount, PID, IPC, UTS and network namespaces. What it sees:

    /usr, /bin, /lib...      read-only, the host's programs (terraform, sh, coreutils)
    /etc/alternatives        read-only, so /usr/bin/awk and friends resolve
    /work                    the job directory, read-write (template, .terraform, state, plan)
    <mirror dir>             read-only, at its host path (the CLI config names it there)
    /etc/terraform.rc        a read-only copy of the CLI config: the mirror, no plugin cache
    /etc/ssl/appliance-ca.pem  a read-only copy of the CA bundle, when the daemon has one
    /run/appliance-runtime.sock  the runtime service's socket, only for a job that carries a runtime
                             credential (a workspace build); never for an import
    /tmp                     a private tmpfs, also HOME
    /dev                     null, zero, random, urandom, tty, pts

No /proc at all: a fresh procfs cannot be mounted under systemd's ProtectKernelTunables or inside
a container (the kernel refuses while /proc/sys is overmounted), and the host's would show other
processes. Directories are handed over as open descriptors (--bind-fd), so the sandbox uid needs
no search permission on the daemon's own folders. The environment is exactly what the runner
builds; nothing of the daemon's is inherited.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import OperatorError
from appliance.sdk.runtime import RUNTIME_SOCKET_IN_SANDBOX, TOKEN_ENV

# Above the ranges systemd hands to containers (524288-1879048191) and below 2^31, so no account,
# DynamicUser= or container on the host owns files under it. In-process daemon N uses BASE + N.
SANDBOX_UID_BASE = 0x70000000
WORK = "/work"
CLI_CONFIG = "/etc/terraform.rc"
CA_FILE = "/etc/ssl/appliance-ca.pem"
TMP = "/tmp"  # noqa: S108 -- the sandbox's own tmpfs, not the host's /tmp
BWRAP = "bwrap"
_TERRAFORM_ELSEWHERE = "/opt/terraform/terraform"
_PR_SET_PDEATHSIG, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 1, 47, 4
_LIBC = ctypes.CDLL(None, use_errno=True)
# Only with a shared network: what name resolution and the system's CAs need.
_NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl/certs")
_CLEAN = "chmod -R u+rwX /work 2>/dev/null; find /work -mindepth 1 -delete 2>/dev/null; exit 0"


class SandboxUnavailable(OperatorError):
    """The sandbox could not start; terraform never runs without it."""


def _enter_sandbox_user() -> None:
    """In the child, after the uid switch: die with the daemon, keep none of its capabilities."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # A daemon holding CAP_SETUID as ambient capability would pass it on through exec; bwrap refuses to run then.
    _LIBC.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


@dataclass
class Launch:
    """One sandboxed command, ready for subprocess.Popen(argv, **popen_kwargs())."""

    argv: list[str]
    env: dict[str, str]
    uid: int
    fds: list[int] = field(default_factory=list)
    info_write: int = -1
    info: int = -1  # read end of bwrap's --info-fd: the sandboxed process's PID on the host

    def start(self, sandbox: Sandbox, stdout: int, stderr: int) -> subprocess.Popen[bytes]:
        """Start bwrap as the sandbox uid, or say what to install or grant when it cannot start."""
        try:
            return subprocess.Popen(self.argv, env=self.env, pass_fds=self.fds, user=self.uid, group=self.uid,
                                    extra_groups=[], umask=0o022, cwd="/", stdin=subprocess.DEVNULL, stdout=stdout,
                                    stderr=stderr, start_new_session=True, preexec_fn=_enter_sandbox_user)
        except FileNotFoundError as err:
            if err.filename != sandbox.bwrap:
                raise
            raise SandboxUnavailable(
                f"terraform's sandbox cannot start: {sandbox.bwrap!r} (bubblewrap) is not installed.",
                "Install it (apt-get install bubblewrap; the appliance bundle ships it); terraform never runs "
                "unsandboxed.") from err
        except PermissionError as err:
            raise SandboxUnavailable(
                f"terraform's sandbox cannot start: the daemon (uid {os.getuid()}) cannot switch to the sandbox "
                f"uid {self.uid}: {err.strerror}.",
                "Run the daemon as root, or grant it CAP_SETUID, CAP_SETGID and CAP_KILL (the installed "
                "appliance-provisioner unit does).") from err

    def started(self) -> None:
        """Close the daemon's copy of the info pipe's write end, so a read ends when bwrap's does."""
        if self.info_write >= 0:
            os.close(self.info_write)
            self.fds.remove(self.info_write)
            self.info_write = -1

    def sandboxed_pid(self) -> int | None:
        """terraform's PID on the host (it leads its own process group), once bwrap reported it."""
        try:
            data = os.read(self.info, 4096)
        except OSError:
            return None
        try:
            pid = json.loads(data or b"{}").get("child-pid")
        except ValueError:
            return None
        return int(pid) if pid else None


@dataclass(frozen=True)
class Sandbox:
    uid: int
    cli_config: Path  # host path; copied in read-only
    mirror_dir: Path | None = None  # a filesystem mirror, bound read-only at its host path
    ca_file: Path | None = None
    network: bool = False  # share the host's network: only for a daemon that installs over HTTPS
    runtime_socket: Path | None = None  # the runtime service's socket on the host, for builds that may use it
    bwrap: str = BWRAP

    def __post_init__(self) -> None:
        if self.uid == 0 or self.uid == os.getuid():
            raise ValueError(f"the sandbox uid {self.uid} must be neither root nor the daemon's own uid")

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """terraform's whole environment: fixed values, then the job's provider values; never the daemon's."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": TMP, "TMPDIR": TMP, "LANG": "C.UTF-8",
               "TF_CLI_CONFIG_FILE": CLI_CONFIG, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
               **extra}
        if self.ca_file is not None:
            env["SSL_CERT_FILE"] = CA_FILE
        return env

    @contextmanager
    def launch(self, workdir: Path, command: list[str], env: dict[str, str]) -> Iterator[Launch]:
        """The bwrap command line for `command` in `workdir`; its descriptors close when the block ends."""
        with ExitStack() as fds:
            def opened(path: Path, flags: int) -> str:
                fd = os.open(path, flags | os.O_CLOEXEC)
                fds.callback(os.close, fd)
                launch.fds.append(fd)
                return str(fd)

            launch = Launch([], self.environment(env), self.uid)
            info_read, info_write = os.pipe()
            fds.callback(os.close, info_read)
            launch.info, launch.info_write = info_read, info_write
            launch.fds.append(info_write)
            argv = [self.bwrap, "--unshare-all", *(["--share-net"] if self.network else []),
                    "--uid", str(self.uid), "--gid", str(self.uid),
                    "--die-with-parent", "--new-session", "--as-pid-1", "--info-fd", str(info_write),
                    *_system_mounts(self.network), "--dev", "/dev", "--tmpfs", TMP,
                    "--ro-bind-data", opened(self.cli_config, os.O_RDONLY), CLI_CONFIG]
            if self.mirror_dir is not None:
                argv += ["--ro-bind-fd", opened(self.mirror_dir, os.O_PATH | os.O_DIRECTORY), str(self.mirror_dir)]
            if self.ca_file is not None:
                argv += ["--ro-bind-data", opened(self.ca_file, os.O_RDONLY), CA_FILE]
            if (socket := self._runtime_socket_for(env)) is not None:
                # Read-only is enough: connecting needs write permission on the socket, not on its mount.
                argv += ["--ro-bind-fd", opened(socket, os.O_PATH), RUNTIME_SOCKET_IN_SANDBOX]
            program, mount = _program(command[0], launch.env["PATH"])
            if mount is not None:
                argv += ["--ro-bind-fd", opened(mount, os.O_PATH), _TERRAFORM_ELSEWHERE]
            argv += ["--bind-fd", opened(workdir, os.O_PATH | os.O_DIRECTORY), WORK, "--remount-ro", "/",
                     "--chdir", WORK, "--", program, *command[1:]]
            launch.argv = argv
            fds.callback(launch.started)
            yield launch

    def _runtime_socket_for(self, env: dict[str, str]) -> Path | None:
        """The host socket to bind for a job: only one carrying a runtime credential, and only if it exists.

        A build whose template uses no podman resource must not fail because the service is down;
        one that does is told by the provider that it cannot reach the service.
        """
        if self.runtime_socket is None or not env.get(TOKEN_ENV):
            return None
        try:
            is_socket = stat.S_ISSOCK(self.runtime_socket.stat().st_mode)
        except OSError:
            return None
        return self.runtime_socket if is_socket else None

    def run(self, workdir: Path, command: list[str], env: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess[bytes]:
        """Run a short command to the end, capturing its output."""
        with self.launch(workdir, command, env) as launch:
            process = launch.start(self, subprocess.PIPE, subprocess.PIPE)
            launch.started()
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
        return subprocess.CompletedProcess(launch.argv, process.returncode, out, err)

    def clean(self, workdir: Path) -> None:
        """Remove a job directory: first, as the sandbox uid, what terraform made there; then the rest."""
        if workdir.is_symlink() or not workdir.is_dir():
            workdir.unlink(missing_ok=True)
            return
        self.run(workdir, ["sh", "-c", _CLEAN], {}, timeout=300)
        shutil.rmtree(workdir)

    def prepare(self, jobs: Path, job_id: object) -> Path:
        """A fresh job directory under `jobs` for the sandbox uid to fill, named so no one else can guess it.

        bwrap resolves what it binds as the sandbox uid, so `jobs` and the mirror must be searchable
        (o+x on every parent); `jobs` itself is searchable but not listable.
        """
        jobs.mkdir(parents=True, exist_ok=True)
        for folder in (jobs.parent, jobs):
            folder.chmod(0o711)
        for needed in (jobs, self.mirror_dir):
            if needed is not None:
                _check_reachable(needed)
        workdir = jobs / f"{job_id}-{secrets.token_hex(16)}"
        workdir.mkdir(mode=0o700)
        return workdir

    def hand_over(self, workdir: Path) -> None:
        """Let the sandbox uid write the unpacked job directory and its top-level files (state, lock file).

        World-writable is safe here: only the daemon can walk to it; the sandbox reaches it by descriptor.
        """
        workdir.chmod(0o777)
        for entry in workdir.iterdir():
            if stat.S_ISREG(entry.lstat().st_mode):
                entry.chmod(0o666)


def _check_reachable(path: Path) -> None:
    for folder in [path, *path.parents]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            raise SandboxUnavailable(
                f"terraform's sandbox cannot reach {path}: {folder} is not searchable by other users.",
                f"Run 'chmod o+x {folder}', or move the provisioner's or the mirror's directory somewhere "
                "every parent is searchable (the sandbox uid has no other way in).")


def _system_mounts(network: bool) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind-try", "/etc/alternatives", "/etc/alternatives"]
    if network:
        for path_name in _NETWORK_FILES:
            args += ["--ro-bind-try", path_name, path_name]
    return args


def _program(name: str, path: str) -> tuple[str, Path | None]:
    """How the sandbox finds `name`: by its path under /usr, or bound in from elsewhere (a custom terraform)."""
    found = shutil.which(name, path=path) if "/" not in name else name
    if found is None:
        raise FileNotFoundError(2, f"{name} is not on PATH", name)
    real = Path(found).resolve()
    if real.parts[:2] == ("/", "usr") or real.parts[:2] in (("/", "bin"), ("/", "sbin")):
        return str(real), None
    return _TERRAFORM_ELSEWHERE, real


def sandbox_failure(lines: list[str]) -> str | None:
    """bwrap's own complaint when it could not set the sandbox up (user namespaces disabled...), or None."""
    found = next((line for line in lines if line.startswith("bwrap: ")), None)
    if found is None:
        return None
    return (f"terraform's sandbox cannot start ({found}). Enable unprivileged user namespaces "
            "(sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1) and allow them, mount, "
            "the namespaces bwrap makes and AF_NETLINK in the daemon's unit; terraform never runs unsandboxed.")


def read_job_file(path: Path) -> bytes | None:
    """A file terraform wrote, read without following a link or blocking on a FIFO the template planted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:  # ELOOP: a symlink in place of the file
        raise OSError(err.errno, f"{path.name} in the job directory is not a regular file") from err
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} in the job directory is not a regular file")
        return handle.read()


def stat_job_file(path: Path) -> os.stat_result | None:
    """A file terraform wrote, stat'ed without following a link; None while it does not exist."""
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
