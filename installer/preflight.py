"""Checks derived from the bundle and the host, each blocking or warning, each with its fix.

Every probe of the host goes through `HostProbe`, so tests can describe a host as data.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bundles.manifest import Manifest
from installer.config import InstallConfig
from installer.paths import HostPaths

PASS, WARN, BLOCK = "pass", "warn", "block"
MIN_MEMORY = 1536 << 20
GOOD_MEMORY = 4 << 30
DATA_SPACE = 2 << 30
INSTALL_OVERHEAD = 1 << 30  # the venv, unpacked Debian packages and PostgreSQL's first files
CHECK_NAMES = ("os", "arch", "systemd", "cpu", "memory", "disk", "ports", "clock", "hostname", "existing-install")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    message: str
    fix: str = ""
    ignored: bool = False

    @property
    def is_blocking(self) -> bool:
        return self.status == BLOCK and not self.ignored


class HostProbe:
    """The real host. Tests subclass it to describe another one."""

    def os_release(self) -> dict[str, str]:
        try:
            lines = Path("/etc/os-release").read_text().splitlines()
        except FileNotFoundError:
            return {}
        pairs = (line.split("=", 1) for line in lines if "=" in line)
        return {k: v.strip().strip('"') for k, v in pairs}

    def machine(self) -> str:
        return platform.machine()

    def has_systemd(self) -> bool:
        return Path("/run/systemd/system").is_dir()

    def cpu_count(self) -> int:
        return os.cpu_count() or 1

    def memory_bytes(self) -> int:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
        return 0

    def free_bytes(self, path: Path) -> int:
        while not path.exists():
            path = path.parent
        return shutil.disk_usage(path).free

    def port_is_free(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))  # noqa: S104 -- testing whether anything holds the port
            except OSError:
                return False
        return True

    def now(self) -> datetime:
        return datetime.now(UTC)

    def resolves(self, hostname: str) -> bool:
        try:
            socket.getaddrinfo(hostname, None)
        except OSError:
            return False
        return True


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB"


def check_os(probe: HostProbe) -> Check:
    release = probe.os_release()
    name = f"{release.get('ID', 'unknown')} {release.get('VERSION_ID', '?')}"
    if release.get("ID") == "debian" and release.get("VERSION_ID") == "12":
        return Check("os", PASS, "Debian 12")
    return Check("os", BLOCK, f"this host runs {name}; the bundle is built for Debian 12.",
                 "Install on a Debian 12 (bookworm) host.")


def check_arch(probe: HostProbe) -> Check:
    machine = probe.machine()
    if machine in ("x86_64", "amd64"):
        return Check("arch", PASS, "amd64")
    return Check("arch", BLOCK, f"this host is {machine}; the bundle is for amd64.", "Use an x86_64 host.")


def check_systemd(probe: HostProbe) -> Check:
    if probe.has_systemd():
        return Check("systemd", PASS, "systemd is init")
    return Check("systemd", BLOCK, "systemd is not the init system, so services cannot be managed.",
                 "Boot the host with systemd (Debian's default).")


def check_cpu(probe: HostProbe) -> Check:
    count = probe.cpu_count()
    if count >= 2:
        return Check("cpu", PASS, f"{count} CPUs")
    return Check("cpu", WARN, f"{count} CPU; builds and workspaces will be slow.", "Give the host at least 2 CPUs.")


def check_memory(probe: HostProbe) -> Check:
    size = probe.memory_bytes()
    if size < MIN_MEMORY:
        return Check("memory", BLOCK, f"{_gib(size)} of memory; at least {_gib(MIN_MEMORY)} is needed.",
                     "Give the host more memory.")
    if size < GOOD_MEMORY:
        return Check("memory", WARN, f"{_gib(size)} of memory; {_gib(GOOD_MEMORY)} or more is recommended.",
                     "Add memory before running many workspaces.")
    return Check("memory", PASS, f"{_gib(size)} of memory")


def check_disk(probe: HostProbe, manifest: Manifest, paths: HostPaths) -> Check:
    needed_opt = manifest.total_size + INSTALL_OVERHEAD
    free_opt, free_data = probe.free_bytes(paths.opt), probe.free_bytes(paths.state)
    if free_opt < needed_opt:
        return Check("disk", BLOCK, f"{_gib(free_opt)} free for {paths.opt}; this bundle needs {_gib(needed_opt)}.",
                     f"Free space on the file system holding {paths.opt}.")
    if free_data < DATA_SPACE:
        return Check("disk", BLOCK, f"{_gib(free_data)} free for {paths.state}; at least {_gib(DATA_SPACE)} is "
                     "needed for data.", f"Free space on the file system holding {paths.state}.")
    return Check("disk", PASS, f"{_gib(free_opt)} free for the release, {_gib(free_data)} for data")


def check_ports(probe: HostProbe, config: InstallConfig, paths: HostPaths) -> Check:
    ours = (paths.root / "etc/nginx/sites-enabled/appliance.conf").exists()
    busy = [p for p in (config.http_port, config.https_port) if not probe.port_is_free(p)]
    if not busy or ours:
        return Check("ports", PASS, f"ports {config.http_port} and {config.https_port} are "
                     + ("held by this appliance's nginx" if busy else "free"))
    return Check("ports", BLOCK, f"port(s) {', '.join(map(str, busy))} are in use by another program.",
                 "Stop that program, or choose other ports with https_port/http_port in --config.")


def check_clock(probe: HostProbe, manifest: Manifest) -> Check:
    now = probe.now()
    if now < manifest.created_at - timedelta(hours=1):
        return Check("clock", BLOCK, f"the clock says {now:%Y-%m-%d %H:%M} UTC, before this bundle was built "
                     f"({manifest.created_at:%Y-%m-%d}).", "Set the clock (timedatectl set-time ...) and retry.")
    left = manifest.expires_at - now
    if left < timedelta(days=30):
        return Check("clock", WARN, f"this bundle expires in {left.days} days ({manifest.expires_at:%Y-%m-%d}).",
                     "Plan the next update before then.")
    return Check("clock", PASS, f"{now:%Y-%m-%d %H:%M} UTC")


def check_hostname(probe: HostProbe, config: InstallConfig) -> Check:
    if probe.resolves(config.hostname):
        return Check("hostname", PASS, f"{config.hostname} resolves")
    return Check("hostname", WARN, f"{config.hostname} does not resolve on this host.",
                 "Add it to /etc/hosts or the site's DNS; clients must reach the appliance by that name.")


def check_existing(manifest: Manifest, paths: HostPaths) -> Check:
    installed = paths.installed_version()
    if installed is None:
        return Check("existing-install", PASS, "no appliance installed yet")
    if installed == manifest.version:
        return Check("existing-install", PASS, f"{installed} is installed; this run converges it")
    return Check("existing-install", BLOCK, f"appliance {installed} is installed; this bundle is {manifest.version}.",
                 "Changing versions is an upgrade, with a plan, a backup and rollback: run "
                 "appliance-installer upgrade BUNDLE (see --plan first).")


def run_preflight(manifest: Manifest, config: InstallConfig, paths: HostPaths, probe: HostProbe,
                  ignored: frozenset[str] = frozenset()) -> list[Check]:
    checks = [check_os(probe), check_arch(probe), check_systemd(probe), check_cpu(probe), check_memory(probe),
              check_disk(probe, manifest, paths), check_ports(probe, config, paths), check_clock(probe, manifest),
              check_hostname(probe, config), check_existing(manifest, paths)]
    return [Check(c.name, c.status, c.message, c.fix, ignored=c.status == BLOCK and c.name in ignored)
            for c in checks]
