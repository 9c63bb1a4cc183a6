"""A fresh, network-less Debian host booted with systemd under systemd-nspawn, for end-to-end tests.

`offline_host(baseline, workdir)` copies a debootstrap'd rootfs, boots it with systemd as PID 1 and
only a loopback interface (`--private-network`), waits until systemd reports the system running,
and yields an `OfflineHost` that runs commands inside with nsenter. On the way out it powers the
container off, kills whatever is left, and removes the copy.

What this machine needs, found by trying (PID 1 here is a sandbox process, not systemd, and the
cgroup layout is hybrid: v1 controllers, name=systemd v1, cgroup2 at /sys/fs/cgroup/unified):

- `--register=no --keep-unit`: there is no systemd/machined on the host to register with or to
  allocate a scope from, so nspawn must stay in the cgroup it was started in.
- With `--keep-unit`, nspawn moves itself into `<its cgroup>/supervisor` and the container into
  `<its cgroup>/payload`. Started from the root cgroup, every container would share `/payload`
  and their systemds would fight over one cgroup tree, and the directories would be left behind.
  So each nspawn is started in a cgroup of its own (created here, removed on stop), in both the
  name=systemd and the unified hierarchy. That makes concurrent hosts safe.
- nspawn's cgroup auto-detection picks "hybrid" (v1 controllers read-only, a writable name=systemd
  and cgroup2 subtree) for a hybrid host and an image with systemd >= 233, and the container boots
  with it. `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1` (pure cgroup2 inside) boots too but gains nothing:
  this host's cgroup2 has only the hugetlb controller. `SYSTEMD_NSPAWN_USE_CGNS` defaults to a cgroup
  namespace, so the container's systemd sees its own cgroup as `/`. Neither variable is set: the
  defaults are what was verified, and they adapt to a host with a different layout.
- Consequence for units inside: resource limits (MemoryMax=, TasksMax=, IPAddressDeny=) are
  accepted but not enforced; LimitNOFILE= above the host's hard limit is silently lowered to it
  (this sandbox lacks CAP_SYS_RESOURCE, so `--capability=all` cannot grant it).
- `--system-call-filter=@keyring`: nspawn's default filter answers keyctl() with EPERM in the
  container's units (not under nsenter), and runc joins a session keyring for every container, so
  podman under the runtime service failed with "unable to join session keyring". A real host allows it.
- `--console=read-only`: the container's console is a pty whose output nspawn copies to its stdout,
  so the boot log (systemd's status lines) lands in `workdir/nspawn.log` for failure messages.
  `pipe` and `passive` print nothing from the container. `TERM=dumb` keeps colour codes out.
- `--resolv-conf=off --timezone=off --link-journal=no`: leave the image's /etc and the host's
  /var/log/journal alone; a fresh offline host has no resolver anyway.
- `copy_in` and `read_text` go through nsenter rather than through `root` on the host: nspawn mounts
  tmpfs on /tmp and /run inside, which hides anything written under `root/tmp` from the host
  side, and an absolute symlink in the image would resolve to a host path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

NSPAWN = "systemd-nspawn"
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSIDE_ENV = {"PATH": INSIDE_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb",
              "DEBIAN_FRONTEND": "noninteractive", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
BOOTED_STATES = ("running", "degraded")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class OfflineHostError(RuntimeError):
    """The container did not boot, or could not be stopped cleanly."""


@dataclass
class OfflineHost:
    root: Path            # the container's rootfs on the host filesystem
    leader_pid: int       # PID (in the host's namespace) of the container's systemd (PID 1 inside)
    machine: str = ""     # nspawn's --machine name (unique per host)
    log: Path | None = None                  # nspawn's stdout and stderr, with the console output
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    cgroups: list[Path] = field(default_factory=list)   # the cgroups this nspawn was started in
    copy_seconds: float = 0.0                 # copying the baseline rootfs
    boot_seconds: float = 0.0                 # from nspawn start until systemd is running
    stopped: bool = field(default=False, repr=False)
    # v1 controller cgroups this host's workspace containers may have made (see delegate_cgroup_controllers).
    delegated: list[Path] = field(default_factory=list)

    # -- running things inside -------------------------------------------------------------------

    def nsenter_argv(self, *argv: str) -> list[str]:
        """The host command line that runs argv inside every namespace of the container."""
        return ["nsenter", f"--target={self.leader_pid}", "--mount", "--uts", "--ipc", "--net", "--pid",
                "--cgroup", "--root", "--wd", "--", *argv]

    def run(self, *argv: str, input: str | None = None, timeout: float = 300,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside; capture text output; a non-zero exit is returned, never raised."""
        return subprocess.run(self.nsenter_argv(*argv), input=input, capture_output=True, text=True,
                              timeout=timeout, env={**INSIDE_ENV, **(env or {})}, check=False)

    def sh(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`sh -ec script` inside."""
        return self.run("sh", "-ec", script, timeout=timeout)

    def copy_in(self, source: Path, destination: str) -> None:
        """Copy a host file or directory to the absolute path `destination` inside (root-owned, modes kept).

        It goes through tar inside the container, so it lands in the container's view of the
        filesystem (its own /tmp and /run included) and symlinks resolve as the container sees them.
        """
        if not destination.startswith("/"):
            raise ValueError(f"destination must be an absolute path inside the container: {destination!r}")
        script = 'mkdir -p "$1" && tar -x --no-overwrite-dir --numeric-owner -C "$1" -f -'
        target, member = destination, "."
        if not source.is_dir():
            target, member = str(Path(destination).parent), Path(destination).name
        with tempfile.TemporaryFile() as err, subprocess.Popen(
                self.nsenter_argv("sh", "-ec", script, "sh", target), stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=err, env=INSIDE_ENV) as proc:
            assert proc.stdin is not None
            with proc.stdin, tarfile.open(fileobj=proc.stdin, mode="w|") as archive:
                archive.add(source, arcname=member, filter=_root_owned)
            proc.wait(timeout=600)
            err.seek(0)
            if proc.returncode != 0:
                detail = err.read().decode(errors="replace")
                raise OfflineHostError(f"copying {source} to {destination} failed: {detail}")

    def read_text(self, path: str) -> str:
        """The text of a file inside (as the container sees it)."""
        result = self.run("cat", "--", path, timeout=60)
        if result.returncode != 0:
            raise FileNotFoundError(f"{path} inside {self.machine}: {result.stderr.strip()}")
        return result.stdout

    def journal(self, unit: str | None = None, lines: int = 50) -> str:
        """The last lines of the journal inside, of one unit or of everything."""
        argv = ["journalctl", "--no-pager", "-n", str(lines), *(["-u", unit] if unit else [])]
        return self.run(*argv, timeout=60).stdout

    def delegate_cgroup_controllers(self) -> None:
        """Make the v1 controllers writable inside, as they are on a real host, for podman's limits.

        nspawn mounts them read-only on this hybrid machine (see above), so runc could not give a
        workspace container the CPU and memory limits the runtime service's policy requires.
        Inside its cgroup namespace the host sees this process's cgroup of each controller as its
        root; what podman makes there (machine.slice) is removed, when empty, after the host stops.
        """
        remount = ('for c in /sys/fs/cgroup/*/; do [ "$(stat -f -c %T "$c")" = cgroupfs ] || continue; '
                   'mount -o remount,bind,rw "$c" && echo "$c"; done')
        result = self.sh(remount, timeout=60)
        if result.returncode != 0:
            raise OfflineHostError(f"could not make the cgroup controllers writable: {result.stderr}")
        own = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
        for mount in result.stdout.split():
            controller = Path(mount).name
            where = next((path for names, path in own.items() if controller in names.split(",")), None)
            if where is not None:
                self.delegated.append(CGROUP_ROOT / controller / where.lstrip("/") / "machine.slice")

    # -- lifecycle -------------------------------------------------------------------------------

    def wait_until_booted(self, timeout: float = 120) -> str:
        """Wait for `systemctl is-system-running --wait`; return "running" or "degraded"."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            self._check_alive()
            with suppress(subprocess.TimeoutExpired):
                state = self.run("systemctl", "is-system-running", "--wait",
                                 timeout=max(1.0, deadline - time.monotonic())).stdout.strip()
            if state in BOOTED_STATES:
                return state
            if state in ("maintenance", "stopping"):
                break
            time.sleep(0.2)  # the bus is not up yet ("offline"/"unknown") or the wait was cut short
        raise OfflineHostError(f"{self.machine} did not finish booting (state {state!r})\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        """`systemctl --failed`, the journal's last lines and nspawn's log tail, for failure messages."""
        parts = []
        if self.process is not None and self.process.poll() is None:
            for argv in (("systemctl", "--failed", "--no-pager"), ("journalctl", "-n", "40", "--no-pager")):
                with suppress(subprocess.TimeoutExpired):
                    result = self.run(*argv, timeout=15)
                    parts.append(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
        parts.append(f"nspawn log ({self.log}):\n{log_tail(self.log)}")
        return "\n".join(parts)

    def stop(self, timeout: float = 60) -> None:
        """Power off cleanly (SIGTERM makes nspawn halt the container), SIGKILL after timeout. Idempotent."""
        if self.stopped:
            return
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Kill the init first: nspawn, still its parent, reaps it and exits. Killing nspawn
                # first would leave the init a zombie until this machine's PID 1 gets round to it.
                self._kill_leader()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    _kill(proc.pid)
                    proc.wait(timeout=30)
        self._kill_leader()   # nspawn gone but its init not (nspawn was killed): end the PID namespace
        _wait_gone(self.leader_pid, timeout=30)
        self.stopped = True
        _remove_cgroups(self.cgroups)
        _remove_propagation_dir(self.machine)

    def _kill_leader(self) -> None:
        # Only while that PID is still a PID namespace's init, so a reused PID is never hit.
        if self.leader_pid > 0 and _status_field(self.leader_pid, "NSpid").split()[1:] == ["1"]:
            _kill(self.leader_pid)

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise OfflineHostError(f"systemd-nspawn exited with {self.process.returncode}\n{self.diagnostics()}")


# -- preparing and booting ------------------------------------------------------------------------


def prepare_root(root: Path, hostname: str) -> None:
    """Give a copied rootfs its own identity: a new machine-id, a hostname and /etc/hosts."""
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def nspawn_argv(root: Path, machine: str) -> list[str]:
    """The systemd-nspawn command line that boots root with no network but loopback."""
    return [NSPAWN, "--quiet", "--register=no", "--keep-unit", f"--machine={machine}", f"--directory={root}",
            "--private-network", "--capability=all", "--console=read-only", "--resolv-conf=off",
            "--timezone=off", "--link-journal=no", "--system-call-filter=@keyring", "--boot"]


def nspawn_env() -> dict[str, str]:
    """nspawn's environment: no colours in the log, nothing of the test process's environment."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb", "SYSTEMD_COLORS": "0", "LANG": "C.UTF-8"}


def own_cgroups(name: str) -> list[Path]:
    """New cgroups (one per hierarchy nspawn uses) under this process's own, for one nspawn to start in.

    Returns [] when they cannot be made (then concurrent hosts would share nspawn's payload cgroup).
    """
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, current = line.split(":", 2)
        paths[controllers] = current
    if (CGROUP_ROOT / "cgroup.controllers").exists():   # pure cgroup v2
        mounts = [(CGROUP_ROOT, paths.get(""))]
    else:                                               # hybrid or legacy: name=systemd (+ unified)
        mounts = [(CGROUP_ROOT / "systemd", paths.get("name=systemd")), (CGROUP_ROOT / "unified", paths.get(""))]
    made: list[Path] = []
    try:
        for mount, path in mounts:
            if path is not None and mount.is_dir():
                made.append(mount / path.lstrip("/") / name)
                made[-1].mkdir()
    except OSError:
        _remove_cgroups(made)
        return []
    return made


def start_nspawn(root: Path, machine: str, cgroups: list[Path], log: Path) -> subprocess.Popen[bytes]:
    """Start nspawn in its own session and cgroups; its output goes to log."""
    # A tiny shell joins the cgroups, then execs nspawn, so nspawn sees them as its own from the start.
    join = 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"'
    argv = ["sh", "-c", join, "sh", *(str(c / "cgroup.procs") for c in cgroups), "--", *nspawn_argv(root, machine)]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=nspawn_env(), start_new_session=True)


def find_leader(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> int:
    """The host PID of the container's init: nspawn's child that is PID 1 in its own PID namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OfflineHostError(f"systemd-nspawn exited with {proc.returncode}:\n{log_tail(log)}")
        for pid in _children(proc.pid):
            if _status_field(pid, "NSpid").split()[1:] == ["1"]:   # host PID, then 1 in the container
                return pid
        time.sleep(0.05)
    raise OfflineHostError(f"no container init appeared under nspawn {proc.pid}:\n{log_tail(log)}")


@contextmanager
def offline_host(baseline: Path, workdir: Path, *, hostname: str = "appliance-host",
                 boot_timeout: float = 120) -> Iterator[OfflineHost]:
    """A booted copy of baseline in workdir/root; always powered off and removed afterwards."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    root, log = workdir / "root", workdir / "nspawn.log"
    host = OfflineHost(root=root, leader_pid=0, machine=f"e2e-{uuid.uuid4().hex[:12]}", log=log)
    try:
        subprocess.run(["cp", "-a", "--reflink=auto", str(baseline), str(root)], check=True, capture_output=True)
        host.copy_seconds = time.monotonic() - started
        prepare_root(root, hostname)
        host.cgroups = own_cgroups(f"appliance-{host.machine}")
        host.process = start_nspawn(root, host.machine, host.cgroups, log)
        host.leader_pid = find_leader(host.process, log)
        host.wait_until_booted(boot_timeout)
        host.boot_seconds = time.monotonic() - started - host.copy_seconds
        yield host
    finally:
        try:
            host.stop()
        finally:
            _remove_tree(root)
            _remove_empty_cgroups(host.delegated)


# -- small helpers --------------------------------------------------------------------------------


def log_tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return "(no log)"
    text = log.read_text(errors="replace").replace("\r", "")   # the console pty writes CR CR LF
    return "\n".join(text.splitlines()[-lines:])


def container_processes(host: OfflineHost) -> list[int]:
    """PIDs of host processes that belong to this container: nspawn, its init, anything naming its root."""
    marks = (str(host.root).encode(), host.machine.encode())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(entry.name) == host.leader_pid or any(mark in cmdline for mark in marks):
            found.append(int(entry.name))
    return found


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _children(parent: int) -> list[int]:
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [pid for pid in pids if _status_field(pid, "PPid").strip() == str(parent)]


def _status_field(pid: int, name: str) -> str:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1] for line in lines if line.startswith(name + ":")), "")


def _alive(pid: int) -> bool:
    state = _status_field(pid, "State").strip()
    return bool(state) and not state.startswith("Z")


def _kill(pid: int) -> None:
    if pid > 0:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pid > 0 and _alive(pid):
        if time.monotonic() > deadline:
            raise OfflineHostError(f"container init {pid} is still alive after SIGKILL")
        time.sleep(0.05)


def _remove_cgroups(cgroups: list[Path], timeout: float = 10) -> None:
    """Remove cgroup trees bottom-up; retries while the last processes are still leaving."""
    deadline = time.monotonic() + timeout
    for top in cgroups:
        while top.exists():
            for dirpath, _, _ in sorted(os.walk(top), key=lambda item: -len(item[0])):
                with suppress(OSError):
                    Path(dirpath).rmdir()
            if top.exists() and time.monotonic() > deadline:
                raise OfflineHostError(f"cgroup {top} could not be removed: {(top / 'cgroup.procs').read_text()}")
            if top.exists():
                time.sleep(0.05)


def _remove_propagation_dir(machine: str) -> None:
    # nspawn refuses to rm -rf it itself because /run is not a tmpfs on this machine.
    if machine:
        with suppress(OSError):
            (Path("/run/systemd/nspawn/propagate") / machine).rmdir()


def _remove_tree(root: Path) -> None:
    if root.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False, capture_output=True)


def _remove_empty_cgroups(tops: list[Path]) -> None:
    """Best effort, bottom-up: a cgroup still in use (another host's container) is not empty and stays."""
    for top in tops:
        for dirpath, _, _ in sorted(os.walk(top), key=lambda item: -len(item[0])):
            with suppress(OSError):
                Path(dirpath).rmdir()
