"""The offline-host harness itself: systemd boots, there is no network, services run, nothing is left behind."""

from __future__ import annotations

import json
import shlex
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.nspawn import OfflineHost, OfflineHostError, container_processes, offline_host

INSIDE_TMP = "/tmp"  # noqa: S108 (the container's /tmp, a tmpfs nspawn mounts inside)

# Directives the appliance's units will use. Each is tried alone, then all together.
HARDENING = ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
             "PrivateDevices=yes", "ProtectKernelTunables=yes", "ProtectControlGroups=yes",
             "RestrictNamespaces=yes", "MemoryDenyWriteExecute=yes", "CapabilityBoundingSet=",
             "RuntimeDirectory=hardened", "User=nobody")

HTTP_UNIT = """[Unit]
Description=A python3 http.server on loopback
[Service]
ExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 --directory {directory} {port}
{directives}
"""

FETCH = """
import sys, time, urllib.request
for _ in range(100):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("no answer from " + sys.argv[1])
"""

# Run as a transient unit with the hardening directives; prints what the sandbox allowed.
PROBE = """
import ctypes, json, mmap, os
result = {"uid": os.getuid()}
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
result["no_new_privs"] = status["NoNewPrivs"].strip()
result["cap_eff"] = status["CapEff"].strip()
for path in ("/usr/probe", "/etc/probe", "/var/lib/probe", "/run/hardened/probe", "/tmp/probe"):  # noqa: S108
    try:
        open(path, "w").close()
        result[path] = "writable"
    except OSError as error:
        result[path] = error.strerror
result["dev"] = sorted(os.listdir("/dev"))
try:
    result["home"] = sorted(os.listdir("/home"))
except OSError as error:
    result["home"] = error.strerror
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    result["wx_mmap"] = "allowed"
except OSError as error:
    result["wx_mmap"] = error.strerror
libc = ctypes.CDLL(None, use_errno=True)
result["unshare_user"] = "allowed" if libc.unshare(0x10000000) == 0 else os.strerror(ctypes.get_errno())
print(json.dumps(result))
"""


def _write_unit(host: OfflineHost, name: str, text: str) -> None:
    result = host.run("tee", f"/etc/systemd/system/{name}", input=text)
    assert result.returncode == 0, result.stderr


def _start(host: OfflineHost, *units: str) -> dict[str, str]:
    """daemon-reload, start each unit; its is-active state, or the journal's last lines on failure."""
    assert host.run("systemctl", "daemon-reload").returncode == 0
    states = {}
    for unit in units:
        host.run("systemctl", "start", unit, timeout=60)
        state = host.run("systemctl", "is-active", unit).stdout.strip()
        if state != "active":
            state += ": " + " | ".join(host.journal(unit, lines=8).strip().splitlines()[1:])
        states[unit] = state
    return states


def _fetch(host: OfflineHost, url: str) -> str:
    result = host.run("python3", "-c", FETCH, url, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_systemd_is_pid_1_and_the_system_is_running(offline_host: OfflineHost, baseline: Path) -> None:
    assert offline_host.read_text("/proc/1/comm").strip() == "systemd"
    assert offline_host.run("readlink", "/proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"
    state = offline_host.run("systemctl", "is-system-running").stdout.strip()
    failed = offline_host.run("systemctl", "--failed", "--no-pager").stdout
    print(f"system state: {state}\n{failed}")
    assert state in ("running", "degraded"), failed
    assert offline_host.run("systemd-detect-virt").stdout.strip() == "systemd-nspawn"
    assert offline_host.run("hostname").stdout.strip() == "appliance-host"
    assert "127.0.1.1\tappliance-host" in offline_host.read_text("/etc/hosts")
    machine_id = offline_host.read_text("/etc/machine-id").strip()
    assert len(machine_id) == 32 and machine_id != (baseline / "etc/machine-id").read_text().strip()


def test_the_host_has_only_loopback_and_no_route_out(offline_host: OfflineHost) -> None:
    interfaces = offline_host.run("python3", "-c", "import os; print(sorted(os.listdir('/sys/class/net')))")
    assert interfaces.stdout.strip() == "['lo']"
    probe = offline_host.run("python3", "-c", "import socket; socket.create_connection(('192.0.2.1', 80), 3)")
    assert probe.returncode != 0 and "Network is unreachable" in probe.stderr, probe.stderr
    # Loopback itself works: systemd brings lo up, so local services can talk to each other.
    loopback = offline_host.run("python3", "-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
                                "s.listen(); socket.create_connection(s.getsockname(), 3); print('ok')")
    assert loopback.stdout.strip() == "ok", loopback.stderr


def test_a_service_starts_and_answers_on_loopback(offline_host: OfflineHost) -> None:
    unit = HTTP_UNIT.format(directory="/usr/share/doc/python3", port=8080, directives="DynamicUser=yes")
    _write_unit(offline_host, "web.service", unit)
    assert _start(offline_host, "web.service") == {"web.service": "active"}
    assert "copyright" in _fetch(offline_host, "http://127.0.0.1:8080/")
    uid = offline_host.sh("stat -c %u /proc/$(systemctl show -p MainPID --value web.service)").stdout.strip()
    assert 61184 <= int(uid) <= 65519  # systemd's range for DynamicUser=


def test_each_hardening_directive_works_alone(offline_host: OfflineHost) -> None:
    """Informational table for writing the appliance's units; every directive is expected to work."""
    units = {}
    for number, directive in enumerate(HARDENING):
        name = f"hard{number}.service"
        unit = HTTP_UNIT.format(directory="/usr/share/doc", port=8100 + number, directives=directive)
        _write_unit(offline_host, name, unit)
        units[name] = directive
    states = _start(offline_host, *units)
    table = "\n".join(f"{units[name]:32} {state}" for name, state in states.items())
    print(f"hardening directives inside systemd-nspawn:\n{table}")
    assert all(state == "active" for state in states.values()), table


def test_a_fully_hardened_service_runs_and_is_confined(offline_host: OfflineHost) -> None:
    directives = "\n".join(HARDENING)
    unit = HTTP_UNIT.format(directory="/run/hardened", port=8200, directives=directives)
    _write_unit(offline_host, "hardened.service", unit.replace(
        "ExecStart=", "ExecStartPre=/bin/sh -c 'echo hardened-ok > /run/hardened/index.html'\nExecStart="))
    assert _start(offline_host, "hardened.service") == {"hardened.service": "active"}
    assert _fetch(offline_host, "http://127.0.0.1:8200/").strip() == "hardened-ok"

    properties = " ".join(f"-p {shlex.quote(d)}" for d in HARDENING)
    probe = offline_host.sh(f"systemd-run --quiet --wait --pipe {properties} /usr/bin/python3 -c {shlex.quote(PROBE)}")
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    print(f"inside the hardened sandbox: {seen}")
    assert seen["uid"] == 65534 and seen["no_new_privs"] == "1" and int(seen["cap_eff"], 16) == 0
    for path in ("/usr/probe", "/etc/probe", "/var/lib/probe"):
        assert seen[path] == "Read-only file system", (path, seen[path])      # ProtectSystem=strict
    assert seen["/run/hardened/probe"] == "writable"                           # RuntimeDirectory=
    assert seen[f"{INSIDE_TMP}/probe"] == "writable"                           # PrivateTmp=
    assert offline_host.run("test", "-e", f"{INSIDE_TMP}/probe").returncode != 0  # ... a private /tmp
    assert seen["home"] == "Permission denied"                                 # ProtectHome=
    assert "console" not in seen["dev"] and "null" in seen["dev"]              # PrivateDevices=
    assert seen["wx_mmap"] == "Operation not permitted"                        # MemoryDenyWriteExecute=
    assert seen["unshare_user"] == "Operation not permitted"                   # RestrictNamespaces=


def test_copy_in_lands_where_the_container_sees_it(offline_host: OfflineHost, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "data.txt").write_text("in a tree\n")
    tool = tree / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    single = tmp_path / "single.txt"
    single.write_text("one file\n")

    offline_host.copy_in(tree, "/opt/tree")
    offline_host.copy_in(single, "/etc/appliance/single.conf")
    offline_host.copy_in(single, f"{INSIDE_TMP}/single.txt")   # nspawn's tmpfs, not root/tmp on the host
    assert offline_host.read_text("/opt/tree/sub/data.txt") == "in a tree\n"
    assert offline_host.run("/opt/tree/tool.sh").stdout == "tool ran\n"
    assert offline_host.read_text("/etc/appliance/single.conf") == "one file\n"
    assert offline_host.read_text(f"{INSIDE_TMP}/single.txt") == "one file\n"
    owners = offline_host.run("stat", "-c", "%U:%G", "/opt/tree/sub/data.txt", "/etc/appliance/single.conf")
    assert owners.stdout.split() == ["root:root", "root:root"]
    with pytest.raises(FileNotFoundError):
        offline_host.read_text("/nonexistent")


def test_stop_leaves_no_process_cgroup_or_copy_behind(baseline: Path, tmp_path: Path) -> None:
    with offline_host(baseline, tmp_path / "host") as host:
        nspawn_pid = host.process.pid if host.process else 0
        assert host.leader_pid in container_processes(host) and nspawn_pid in container_processes(host)
        assert host.cgroups and all(cgroup.is_dir() for cgroup in host.cgroups)
    assert container_processes(host) == []
    assert not Path(f"/proc/{nspawn_pid}").exists() and not Path(f"/proc/{host.leader_pid}").exists()
    assert not any(cgroup.exists() for cgroup in host.cgroups)
    assert not host.root.exists()
    host.stop()  # idempotent


def test_two_hosts_run_side_by_side(baseline: Path, tmp_path: Path) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(offline_host(baseline, tmp_path / "first", hostname="first"))
        second = stack.enter_context(offline_host(baseline, tmp_path / "second", hostname="second"))
        assert first.run("hostname").stdout.strip() == "first"
        assert second.run("hostname").stdout.strip() == "second"
        assert first.read_text("/etc/machine-id") != second.read_text("/etc/machine-id")
        first.sh("echo only-first > /root/marker")
        assert second.run("cat", "/root/marker").returncode != 0
        first.stop(timeout=0)   # no time for a clean poweroff: the SIGKILL path
        assert container_processes(first) == []
        assert not any(cgroup.exists() for cgroup in first.cgroups)
        assert second.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded")


def test_a_root_that_cannot_boot_fails_with_nspawn_log(tmp_path: Path) -> None:
    empty = tmp_path / "not-an-os"
    (empty / "etc").mkdir(parents=True)
    with pytest.raises(OfflineHostError, match="nspawn") as failure, offline_host(empty, tmp_path / "host"):
        pass
    print(failure.value)
    assert "doesn't look like an OS root directory" in str(failure.value)  # the tail of nspawn's own log
    assert not (tmp_path / "host" / "root").exists()
