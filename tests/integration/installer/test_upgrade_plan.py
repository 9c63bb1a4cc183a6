"""Before anything changes: an upgrade verifies, checks the version floor and plans, on a scratch host tree
with real signed bundles. The plan names the new migration and the changed wheel; a bundle below the floor
or a disk too small is refused, and `--plan` leaves no journal."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from bundles.downgrade import authorize, write_signed
from bundles.layout import SBOM
from installer.config import InstallConfig
from installer.errors import InstallError
from installer.install import playbook_vars, switch_current
from installer.paths import HostPaths
from installer.plan import Plan, check_disk
from installer.ui import ConsoleUi
from installer.upgrade import UpgradeOptions, upgrade
from tests.support.bundles import ReleaseKey, build_bundle, make_key, make_stage, sign_bundle

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
MIGRATIONS = "appliance/db/migrations/"


def _wheel(path: Path, migrations: list[str]) -> None:
    with zipfile.ZipFile(path, "w") as wheel:
        for name in migrations:
            wheel.writestr(f"{MIGRATIONS}{name}.up.sql", "SELECT 1;\n")


def _bundle(root: Path, key: ReleaseKey, version: str, migrations: list[str]) -> Path:
    stage = make_stage(root / version, wheel_version="3.0.0", appliance_version=version)
    _wheel(stage / f"wheels/appliance-{version}-py3-none-any.whl", migrations)
    bundle = build_bundle(stage, root / version / "dist", version=version, min_upgrade_from="1.0.0", created=TODAY)
    sign_bundle(bundle, key)
    return bundle


@pytest.fixture
def host(tmp_path: Path) -> tuple[HostPaths, ReleaseKey]:
    """1.2.0 installed: its SBOM (flask 2.0.0), one migration in its venv, pinned keys, the install's vars."""
    key = make_key(tmp_path, "release")
    paths = HostPaths(root=tmp_path / "host")
    release = paths.release("1.2.0")
    installed = release / "venv/lib/python3.11/site-packages" / MIGRATIONS
    installed.mkdir(parents=True)
    (installed / "000001_core.up.sql").write_text("SELECT 1;\n")
    (release / SBOM).write_bytes((make_stage(tmp_path / "old") / SBOM).read_bytes())
    switch_current(paths, release)
    paths.trusted_keys.parent.mkdir(parents=True)
    paths.trusted_keys.write_bytes(key.public)
    playbook_vars("1.2.0", InstallConfig("appliance-host"), release, {"postgres": "p", "pki": "k", "provisioner": "s"},
                  paths)
    return paths, key


def _ui() -> ConsoleUi:
    return ConsoleUi(Console(file=io.StringIO()))


def _plan(paths: HostPaths, bundle: Path) -> Plan:
    plan, journal = upgrade(UpgradeOptions(bundle), paths, _ui(), plan_only=True, confirm=lambda _: True)
    assert journal is None
    return plan


def test_the_plan_names_the_pending_migration_and_the_changed_wheel_and_changes_nothing(
        host: tuple[HostPaths, ReleaseKey], tmp_path: Path) -> None:
    paths, key = host
    plan = _plan(paths, _bundle(tmp_path, key, "1.3.0", ["000001_core", "000002_probe"]))
    assert (plan.from_version, plan.to_version, plan.migrations) == ("1.2.0", "1.3.0", ["000002_probe"])
    assert {"kind": "wheel", "name": "flask", "old": "2.0.0", "new": "3.0.0", "what": "changed"} in plan.changes
    assert "appliance-console.service" in plan.restarts and plan.expected_downtime is None
    assert 0 < plan.disk_needed < plan.disk_free
    assert not paths.journal.exists() and not paths.release("1.3.0").exists()
    assert "migrations: 000002_probe" in "\n".join(plan.lines())


def test_a_bundle_older_than_the_installed_release_or_the_floor_is_refused(
        host: tuple[HostPaths, ReleaseKey], tmp_path: Path) -> None:
    paths, key = host
    with pytest.raises(InstallError, match=r"Bundle rejected \(rollback\): version 1.1.0 is older than the installed"):
        _plan(paths, _bundle(tmp_path, key, "1.1.0", []))
    paths.receipts.mkdir(parents=True)   # 1.4.0 ran here once (then was rolled back by `rollback`)
    (paths.receipts / "upgrade-1.4.0-1.json").write_text(json.dumps(
        {"kind": "upgrade", "to_version": "1.4.0", "version": "1.4.0", "outcome": "succeeded"}))
    with pytest.raises(InstallError, match=r"older than 1.4.0, the newest this host has run"):
        _plan(paths, _bundle(tmp_path, key, "1.3.0", []))
    assert not paths.journal.exists()


def test_the_same_version_is_sent_to_install_and_a_short_disk_is_refused(
        host: tuple[HostPaths, ReleaseKey], tmp_path: Path) -> None:
    paths, key = host
    with pytest.raises(InstallError, match=r"1.2.0 is already installed"):
        _plan(paths, _bundle(tmp_path, key, "1.2.0", []))
    plan = _plan(paths, _bundle(tmp_path, key, "1.3.0", ["000001_core"]))
    with pytest.raises(InstallError, match=r"the upgrade needs .* nothing was changed"):
        check_disk(dataclasses.replace(plan, disk_free=plan.disk_needed - 1))


def test_a_bundle_other_than_the_one_approved_in_the_console_is_refused(
        host: tuple[HostPaths, ReleaseKey], tmp_path: Path) -> None:
    paths, key = host
    options = UpgradeOptions(_bundle(tmp_path, key, "1.3.0", []), expect_manifest="0" * 64, actor="console:owner")
    with pytest.raises(InstallError, match=r"not the 0{64} that was approved; nothing was changed"):
        upgrade(options, paths, _ui(), plan_only=True, confirm=lambda _: True)


def _authorization(tmp_path: Path, key: ReleaseKey, to_version: str) -> Path:
    out = tmp_path / f"downgrade-{to_version}.json"
    document = authorize("1.2.0", to_version, "1.2.0 breaks the quotas", valid_for=timedelta(days=1)).document()
    write_signed(out, document, (key.fingerprint,), key.home, None)
    return out


def test_a_signed_downgrade_is_planned_only_onto_a_schema_the_older_release_knows(
        host: tuple[HostPaths, ReleaseKey], tmp_path: Path) -> None:
    paths, key = host
    older = _bundle(tmp_path, key, "1.1.0", ["000001_core"])
    options = UpgradeOptions(older, downgrade_authorization=_authorization(tmp_path, key, "1.1.0"))
    plan, journal = upgrade(options, paths, _ui(), plan_only=True, confirm=lambda _: True)
    assert (plan.from_version, plan.to_version, plan.unknown_migrations, journal) == ("1.2.0", "1.1.0", [], None)
    # An authorization for another version does not open the way to this one.
    wrong = UpgradeOptions(older, downgrade_authorization=_authorization(tmp_path, key, "1.0.0"))
    with pytest.raises(InstallError, match=r"downgrade"):
        upgrade(wrong, paths, _ui(), plan_only=True, confirm=lambda _: True)
    # 1.0.5 predates migration 000001: it could not start on this database, so it is refused with the way back.
    oldest = _bundle(tmp_path, key, "1.0.5", [])
    options = UpgradeOptions(oldest, downgrade_authorization=_authorization(tmp_path, key, "1.0.5"))
    with pytest.raises(InstallError, match=r"does not know the migration\(s\) 000001_core") as refused:
        upgrade(options, paths, _ui(), plan_only=True, confirm=lambda _: True)
    assert "appliance-installer rollback" in refused.value.hint
    assert not paths.journal.exists() and not paths.release("1.1.0").exists()
