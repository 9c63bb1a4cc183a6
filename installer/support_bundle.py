"""`appliance-installer support-bundle`: what the host knows, redacted, in one zip, even with the console down.

It reads files and runs local commands only (journalctl, the current release's `appliance health
--local`): no API, no login. Every value in /etc/appliance/secrets, the registry's config and
appliance.toml's secret keys is a known secret, hidden wherever it shows (docs/adr/0044-support-bundle.md).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tomllib
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from bundles.support import SupportBundle, secret_values
from installer.appliance_cli import run_appliance
from installer.paths import UNITS, HostPaths
from operator_errors.redaction import is_secret_key

DEFAULT_JOURNAL_MB = 4
HEALTH_TIMEOUT = 120.0
# Units the host runs besides UNITS: a timer's service does the work, the upgrade service applies console requests.
EXTRA_UNITS = ("appliance-upgrade.service",)
_YAML_SECRET = re.compile(r"^\s*[\w-]+:\s*[\"']?(?P<value>[^\s\"'#]+)", re.M)


def journal_units() -> list[str]:
    """Every unit whose journal the bundle holds: a timer's service rather than the timer."""
    return [unit.removesuffix(".timer") + ".service" if unit.endswith(".timer") else unit for unit in UNITS] + \
        list(EXTRA_UNITS)


def collect(paths: HostPaths, journal_mb: int = DEFAULT_JOURNAL_MB) -> SupportBundle:
    bundle = SupportBundle("host", secrets=known_secrets(paths))
    bundle.add_json("versions.json", _versions(paths))
    _add_files(bundle, paths.receipts, "receipts")
    _add_file(bundle, paths.journal, "upgrade-journal.json")
    _add_file(bundle, paths.config, "appliance.toml")
    _add_file(bundle, paths.overrides, "preflight-overrides.jsonl")
    _add_tail(bundle, paths.log, "installer.log", journal_mb * 1_000_000)
    for unit in journal_units():
        _add_journal(bundle, unit, journal_mb * 1_000_000)
    _add_health(bundle, paths)
    bundle.add_json("facts.json", {"disk": _disks(paths), "memory_kb": _meminfo()})
    return bundle


def known_secrets(paths: HostPaths) -> list[str]:
    """Every secret value on this host: the secrets folder's files, secret keys of appliance.toml, the registry's."""
    found: list[str | None] = []
    with suppress(OSError):
        for file in sorted(paths.secrets.rglob("*")):
            if file.is_file():
                found += [file.read_text(errors="replace"), *file.read_text(errors="replace").splitlines()]
    with suppress(OSError, tomllib.TOMLDecodeError):
        config = tomllib.loads(paths.config.read_text())
        found += [str(v) for k, v in config.items() if is_secret_key(k)]
        found += [_url_password(str(config.get("postgres_url") or ""))]
    with suppress(OSError):
        registry = (paths.state / "registry/config.yml").read_text()
        found += [m["value"] for line in registry.splitlines() if is_secret_key(line.split(":")[0])
                  for m in _YAML_SECRET.finditer(line)]
    return secret_values(found)


def _url_password(url: str) -> str | None:
    password = urlsplit(url).password
    return unquote(password) if password else None


def _versions(paths: HostPaths) -> dict[str, Any]:
    releases = sorted(p.name for p in paths.releases.iterdir()) if paths.releases.is_dir() else []
    return {"installed": paths.installed_version(), "releases_on_disk": releases,
            "host": {"kernel": platform.release(), "machine": platform.machine(), "os": _os_release(paths)}}


def _os_release(paths: HostPaths) -> str:
    with suppress(OSError):
        for line in (paths.root / "etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    return "unknown"


def _add_file(bundle: SupportBundle, source: Path, name: str) -> None:
    try:
        bundle.add_text(name, source.read_text(errors="replace"))
    except FileNotFoundError:
        bundle.unavailable(name, f"{source} does not exist")
    except OSError as err:
        bundle.unavailable(name, f"cannot read {source}: {err.strerror}")


def _add_tail(bundle: SupportBundle, source: Path, name: str, limit: int) -> None:
    """The newest `limit` bytes of a log file, from the first whole line."""
    try:
        with source.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - limit))
            data = log.read()
    except OSError as err:
        bundle.unavailable(name, f"cannot read {source}: {err.strerror}")
        return
    if size > limit:
        data = data.partition(b"\n")[2]
    bundle.add_text(name, data.decode(errors="replace"))


def _add_files(bundle: SupportBundle, folder: Path, prefix: str) -> None:
    files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    for file in files:
        _add_file(bundle, file, f"{prefix}/{file.name}")
    if not files:
        bundle.unavailable(f"{prefix}/none.txt", f"{folder} holds no files")


def _add_journal(bundle: SupportBundle, unit: str, limit: int) -> None:
    """The unit's newest `limit` bytes of journal, oldest line first: journalctl reads newest first and stops."""
    name = f"journal/{unit}.log"
    try:
        process = subprocess.Popen(["journalctl", "--unit", unit, "--reverse", "--output", "short-iso", "--no-pager",
                                    "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as err:
        bundle.unavailable(name, f"cannot run journalctl: {err.strerror}")
        return
    assert process.stdout is not None
    lines: list[bytes] = []
    size = 0
    for line in process.stdout:
        if size + len(line) > limit:
            break
        lines.append(line)
        size += len(line)
    process.kill()
    _, stderr = process.communicate()
    if not lines and process.returncode not in (0, -9):
        bundle.unavailable(name, f"journalctl failed: {stderr.decode(errors='replace').strip()[-300:]}")
        return
    bundle.add_text(name, b"".join(reversed(lines)).decode(errors="replace"))


def _add_health(bundle: SupportBundle, paths: HostPaths) -> None:
    """`appliance health --local --output json`: exit 0/1/2 with a report; anything else is recorded as its error."""
    try:
        result = run_appliance(paths, "health", "--local", "--output", "json", timeout=HEALTH_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        bundle.unavailable("health.json", f"cannot run appliance health --local: {err}")
        return
    try:
        report = json.loads(result.stdout)
    except ValueError:
        said = (result.stderr.strip() or result.stdout.strip())[-1000:]
        bundle.unavailable("health.json", f"appliance health --local exited {result.returncode}: {said}")
        return
    bundle.add_json("health.json", report)


def _disks(paths: HostPaths) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for label, folder in (("data", paths.state), ("releases", paths.opt), ("config", paths.etc),
                          ("logs", paths.logs)):
        try:
            stat = os.statvfs(folder)
        except OSError as err:
            facts[label] = {"path": str(folder), "error": err.strerror}
            continue
        facts[label] = {"path": str(folder), "total_bytes": stat.f_blocks * stat.f_frsize,
                        "free_bytes": stat.f_bavail * stat.f_frsize, "free_inodes": stat.f_favail}
    return facts


def _meminfo() -> dict[str, int]:
    wanted = ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree")
    facts: dict[str, int] = {}
    with suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in wanted:
                facts[key] = int(value.split()[0])
    return facts
