"""Preflight as data: each described host gets the verdict and fix an operator needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bundles.manifest import Manifest, Member
from installer.config import InstallConfig
from installer.paths import HostPaths
from installer.preflight import BLOCK, PASS, WARN, HostProbe, run_preflight

BUILT = datetime(2026, 6, 1, tzinfo=UTC)
MANIFEST = Manifest(version="1.2.0", created_at=BUILT, expires_at=BUILT + timedelta(days=365), min_upgrade_from="1.0.0",
                    members=(Member("debs/a.deb", 500 << 20, "ab" * 32, "deb"),))
GIB = 1 << 30


@dataclass
class FakeHost(HostProbe):
    os: dict[str, str] = field(default_factory=lambda: {"ID": "debian", "VERSION_ID": "12"})
    arch: str = "x86_64"
    systemd: bool = True
    cpus: int = 4
    memory: int = 8 * GIB
    free: int = 50 * GIB
    busy_ports: tuple[int, ...] = ()
    clock: datetime = BUILT + timedelta(days=10)
    resolvable: bool = True

    def os_release(self) -> dict[str, str]:
        return self.os

    def machine(self) -> str:
        return self.arch

    def has_systemd(self) -> bool:
        return self.systemd

    def cpu_count(self) -> int:
        return self.cpus

    def memory_bytes(self) -> int:
        return self.memory

    def free_bytes(self, path: Path) -> int:
        return self.free

    def port_is_free(self, port: int) -> bool:
        return port not in self.busy_ports

    def now(self) -> datetime:
        return self.clock

    def resolves(self, hostname: str) -> bool:
        return self.resolvable


CONFIG = InstallConfig(hostname="appliance.example.org")


def _verdicts(host: FakeHost, tmp_path: Path, ignored: frozenset[str] = frozenset()) -> dict[str, str]:
    return {c.name: ("ignored" if c.ignored else c.status)
            for c in run_preflight(MANIFEST, CONFIG, HostPaths(tmp_path), host, ignored)}


def test_a_good_host_passes_every_check(tmp_path: Path) -> None:
    assert set(_verdicts(FakeHost(), tmp_path).values()) == {PASS}


@pytest.mark.parametrize(("host", "check", "status"), [
    (FakeHost(os={"ID": "ubuntu", "VERSION_ID": "24.04"}), "os", BLOCK),
    (FakeHost(arch="aarch64"), "arch", BLOCK),
    (FakeHost(systemd=False), "systemd", BLOCK),
    (FakeHost(cpus=1), "cpu", WARN),
    (FakeHost(memory=1 * GIB), "memory", BLOCK),
    (FakeHost(memory=3 * GIB), "memory", WARN),
    (FakeHost(free=1 * GIB), "disk", BLOCK),
    (FakeHost(busy_ports=(443,)), "ports", BLOCK),
    (FakeHost(clock=BUILT - timedelta(days=3)), "clock", BLOCK),
    (FakeHost(clock=BUILT + timedelta(days=350)), "clock", WARN),
    (FakeHost(resolvable=False), "hostname", WARN),
], ids=["not debian 12", "not amd64", "no systemd", "one cpu", "too little memory", "little memory",
        "disk too small", "port 443 taken", "clock before the build", "bundle about to expire", "unresolvable name"])
def test_each_problem_gets_its_verdict(tmp_path: Path, host: FakeHost, check: str, status: str) -> None:
    verdicts = _verdicts(host, tmp_path)
    assert verdicts[check] == status
    assert {v for name, v in verdicts.items() if name != check} == {PASS}


def test_every_non_passing_check_says_how_to_fix_it(tmp_path: Path) -> None:
    bad = FakeHost(os={"ID": "rhel"}, arch="ppc64le", systemd=False, cpus=1, memory=GIB, free=GIB,
                   busy_ports=(80,), clock=BUILT - timedelta(days=9), resolvable=False)
    checks = run_preflight(MANIFEST, CONFIG, HostPaths(tmp_path), bad)
    assert all(c.fix for c in checks if c.status != PASS)


def test_an_ignored_blocking_check_no_longer_blocks_and_is_marked(tmp_path: Path) -> None:
    checks = run_preflight(MANIFEST, CONFIG, HostPaths(tmp_path), FakeHost(cpus=1, memory=GIB), frozenset({"memory"}))
    memory = next(c for c in checks if c.name == "memory")
    assert memory.ignored and not memory.is_blocking


def test_an_installed_different_version_blocks_but_the_same_version_converges(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    paths.releases.mkdir(parents=True)
    (paths.releases / "1.1.0").mkdir()
    paths.current.symlink_to("releases/1.1.0")
    assert _verdicts(FakeHost(), tmp_path)["existing-install"] == BLOCK
    paths.current.unlink()
    (paths.releases / "1.2.0").mkdir()
    paths.current.symlink_to("releases/1.2.0")
    assert _verdicts(FakeHost(), tmp_path)["existing-install"] == PASS


def test_ports_held_by_our_own_nginx_pass(tmp_path: Path) -> None:
    site = tmp_path / "etc/nginx/sites-enabled/appliance.conf"
    site.parent.mkdir(parents=True)
    site.write_text("server {}")
    assert _verdicts(FakeHost(busy_ports=(80, 443)), tmp_path)["ports"] == PASS


def test_overrides_are_recorded_as_they_are_used(tmp_path: Path) -> None:
    import json

    from installer.install import record_overrides

    paths = HostPaths(tmp_path)
    checks = run_preflight(MANIFEST, CONFIG, paths, FakeHost(memory=GIB), frozenset({"memory"}))
    record_overrides([c for c in checks if c.ignored], "1.2.0", paths)
    record_overrides([c for c in checks if c.ignored], "1.2.0", paths)
    lines = [json.loads(line) for line in paths.overrides.read_text().splitlines()]
    assert [(o["check"], o["version"]) for o in lines] == [("memory", "1.2.0")] * 2
