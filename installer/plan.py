"""An upgrade's plan, made before anything changes: what the bundle changes, which migrations run,
which services restart, which config keys appear, the disk it needs and the downtime to expect.

Everything is read from the verified bundle's open file (the single read stays single: the plan
looks inside the file verification read) and from the current release's folder; nothing is
written. The disk check refuses an upgrade that could not finish staging (a full disk).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bundles.inspect import diff_components, sbom_components
from bundles.layout import SBOM
from bundles.verify import VerifiedBundle
from installer.errors import InstallError
from installer.paths import HostPaths

# The units an upgrade restarts: those that run the release's own code through `current`.
RESTARTED_UNITS = ("appliance-console.service", "appliance-gateway.service", "appliance-relay.service",
                   "appliance-registry.service", "appliance-runtime.service", "appliance-provisioner.service")
CONFIG_TEMPLATE = "playbooks/roles/base/templates/appliance.toml.j2"
VENV_ALLOWANCE = 300 * 1024 * 1024   # the staged release's virtualenv, built from its wheels
_MIGRATION = re.compile(r"(?:^|/)appliance/db/migrations/(\d{6}_[a-z0-9_]+)\.up\.sql$")
_CONFIG_KEY = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*=", re.MULTILINE)


@dataclass(frozen=True)
class Plan:
    from_version: str | None
    to_version: str
    changes: list[dict[str, str | None]]    # bundle diff: kind, name, old, new, what
    migrations: list[str]                   # pending, by name (NNNNNN_name)
    unknown_migrations: list[str]           # applied here, unknown to the new release (a downgrade's)
    restarts: list[str]
    config_keys_added: list[str]
    config_keys_removed: list[str]
    disk_needed: int
    disk_free: int
    expected_downtime: float | None         # seconds, measured by the last upgrade; None before the first

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The plan for people, one line each."""
        out = [f"Upgrade {self.from_version} -> {self.to_version}"]
        out += [f"  {c['what']:<8} {c['kind']:<9} {c['name']} {c['old'] or ''} -> {c['new'] or ''}"
                for c in self.changes] or ["  no component changes"]
        out.append("  migrations: " + (", ".join(self.migrations) or "none pending"))
        out.append("  restarts:   " + ", ".join(self.restarts))
        if self.config_keys_added or self.config_keys_removed:
            out.append(f"  config keys added: {', '.join(self.config_keys_added) or '-'}; "
                       f"removed: {', '.join(self.config_keys_removed) or '-'}")
        out.append(f"  disk: {self.disk_needed / 1e6:.0f} MB needed, {self.disk_free / 1e6:.0f} MB free")
        downtime = f"about {self.expected_downtime:.0f} s (the last upgrade's)" if self.expected_downtime is not None \
            else "not measured yet (no earlier upgrade on this host)"
        out.append(f"  expected downtime: {downtime}")
        return out


def make_plan(bundle: BinaryIO, result: VerifiedBundle, paths: HostPaths) -> Plan:
    bundle.seek(0)
    with tarfile.open(fileobj=bundle, mode="r:") as tar:
        new_sbom = json.loads(_member(tar, SBOM) or b"{}")
        wheel = _member(tar, f"wheels/appliance-{result.manifest.version}-py3-none-any.whl")
        new_template = (_member(tar, CONFIG_TEMPLATE) or b"").decode()
    old = paths.current
    old_sbom = json.loads((old / SBOM).read_text()) if (old / SBOM).exists() else {}
    changes = diff_components(sbom_components(old_sbom), sbom_components(new_sbom))
    old_keys, new_keys = _config_keys(_text(old / CONFIG_TEMPLATE)), _config_keys(new_template)
    needed, free = disk_needed(result, paths), disk_free(paths)
    return Plan(paths.installed_version(), result.manifest.version,
                [{**asdict(c), "what": c.what} for c in changes],
                sorted(_wheel_migrations(wheel) - installed_migrations(paths)),
                sorted(installed_migrations(paths) - _wheel_migrations(wheel)), list(RESTARTED_UNITS),
                sorted(new_keys - old_keys), sorted(old_keys - new_keys), needed, free, last_downtime(paths))


def check_schema(plan: Plan) -> None:
    """A release refuses to run on a schema newer than it knows (db/migrate.py), and migrations only go up."""
    if plan.unknown_migrations:
        raise InstallError(f"{plan.to_version} does not know the migration(s) {', '.join(plan.unknown_migrations)} "
                           f"this database has; it could not start on it. Nothing was changed.",
                           "To return to the release before the last upgrade, with the database as it was then, run: "
                           "appliance-installer rollback. Otherwise restore a backup taken on "
                           f"{plan.to_version} (appliance-installer restore).", step="Plan")


def check_disk(plan: Plan) -> None:
    if plan.disk_free < plan.disk_needed:
        raise InstallError(f"{plan.disk_free / 1e6:.0f} MB free, the upgrade needs {plan.disk_needed / 1e6:.0f} MB "
                           "(the new release, its virtualenv and a backup); nothing was changed.",
                           "Free space under /opt/appliance and /var/lib/appliance (old backups in "
                           "/var/lib/appliance/backups, releases other than current and the previous one), "
                           "then run the upgrade again.", step="Plan")


def disk_needed(result: VerifiedBundle, paths: HostPaths) -> int:
    """The release extracted, its virtualenv, and a backup no bigger than the database's files."""
    staged = 0 if paths.release(result.manifest.version).exists() else result.manifest.total_size + VENV_ALLOWANCE
    return staged + _tree_size(paths.root / "var/lib/postgresql")


def disk_free(paths: HostPaths) -> int:
    """Free bytes on the file system holding the releases (and, if elsewhere, the smaller of it and the backups')."""
    paths.state.mkdir(parents=True, exist_ok=True)
    return min(shutil.disk_usage(paths.opt).free, shutil.disk_usage(paths.state).free)


def installed_migrations(paths: HostPaths) -> set[str]:
    found = paths.current.glob("venv/lib/python3*/site-packages/appliance/db/migrations/*.up.sql")
    return {path.name.removesuffix(".up.sql") for path in found}


def last_downtime(paths: HostPaths) -> float | None:
    """The downtime the newest upgrade receipt measured."""
    receipts = sorted(paths.receipts.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for receipt in receipts:
        data = json.loads(receipt.read_text())
        if data.get("kind") == "upgrade" and data.get("downtime_seconds") is not None:
            return float(data["downtime_seconds"])
    return None


def _wheel_migrations(wheel: bytes | None) -> set[str]:
    if wheel is None:
        return set()
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        return {match.group(1) for name in archive.namelist() if (match := _MIGRATION.search(name))}


def _member(tar: tarfile.TarFile, name: str) -> bytes | None:
    try:
        handle = tar.extractfile(name)
    except KeyError:
        return None
    return handle.read() if handle else None


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _config_keys(template: str) -> set[str]:
    return set(_CONFIG_KEY.findall(template))


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) \
        if root.exists() else 0
