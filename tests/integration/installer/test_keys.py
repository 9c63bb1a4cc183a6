"""The installer's trusted keys: a verified rotation is pinned only after a healthy install; downgrades need
their authorization. Real bundles and GPG keys; the host is a scratch tree (HostPaths(root))."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from bundles.downgrade import authorize, write_signed
from bundles.errors import BundleRejected
from bundles.verify import VerifiedBundle, open_bundle
from installer.config import InstallConfig
from installer.install import InstallOptions, install, verify
from installer.keys import pin_rotated_keys
from installer.paths import HostPaths
from installer.preflight import CHECK_NAMES
from installer.ui import ConsoleUi
from tests.integration.installer.test_install import TODAY, CourierAtWork, OfflineHost, StoppedBeforePlaybooks
from tests.support.bundles import ReleaseKey, add_rotation, build_bundle, make_key, make_stage, sign_bundle


@dataclass(frozen=True)
class Setup:
    old: ReleaseKey
    new: ReleaseKey
    keyring: Path      # the old key's, given with --keyring on first install
    rotating: Path     # 1.3.0 signed by old, carrying a rotation to the new key signed by old and new
    later: Path        # 1.4.0 signed by the new key only
    hostile: Path      # 1.3.0 signed by old, carrying a keyring signed only by an outsider


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("keys")
    old, new, outsider = make_key(root, "old"), make_key(root, "new"), make_key(root, "outsider")
    keyring = root / "release-keys.asc"
    keyring.write_bytes(old.public)

    def bundle(name: str, version: str, rotation: tuple[ReleaseKey, ...] | None, *signers: ReleaseKey) -> Path:
        stage = make_stage(root / name)
        if rotation is not None:
            add_rotation(stage, new.public, *rotation)
        built = build_bundle(stage, root / name / "dist", version=version, created=TODAY)
        sign_bundle(built, *signers)
        return built

    return Setup(old, new, keyring, bundle("rotating", "1.3.0", (old, new), old),
                 bundle("later", "1.4.0", None, new), bundle("hostile", "1.3.0", (outsider, new), old))


def _verify(bundle: Path, paths: HostPaths, keyring: Path | None = None,
            downgrade: Path | None = None) -> VerifiedBundle:
    options = InstallOptions(bundle, InstallConfig(hostname="appliance.test"), keyring,
                             downgrade_authorization=downgrade)
    with open_bundle(bundle) as handle:
        return verify(handle, options, paths, ConsoleUi(Console(file=io.StringIO())))[0]


def _installed(root: Path, version: str, keys: bytes) -> HostPaths:
    paths = HostPaths(root)
    paths.release(version).mkdir(parents=True)
    paths.current.symlink_to(paths.release(version).relative_to(paths.opt))
    paths.trusted_keys.parent.mkdir(parents=True)
    paths.trusted_keys.write_bytes(keys)
    return paths


def test_a_rotation_is_pinned_after_the_install_and_then_a_bundle_signed_only_by_the_new_key_installs(
        setup: Setup, tmp_path: Path) -> None:
    paths = _installed(tmp_path, "1.2.0", setup.old.public)
    with pytest.raises(BundleRejected, match="0 of the required 1"):
        _verify(setup.later, paths)  # before the rotation, the new key is a stranger

    result = _verify(setup.rotating, paths)
    assert paths.trusted_keys.read_bytes() == setup.old.public, "verifying pins nothing"
    pinned = pin_rotated_keys(result, paths)

    assert paths.trusted_keys.read_bytes() == setup.new.public
    assert paths.trusted_keys.stat().st_mode & 0o777 == 0o644
    assert pinned is not None and pinned["pinned"] == str(paths.trusted_keys)
    assert [p.name for p in paths.etc.iterdir()] == ["trusted-keys.pgp"], "no temporary file left beside it"
    assert _verify(setup.later, paths).manifest.version == "1.4.0"
    with pytest.raises(BundleRejected, match="0 of the required 1"):
        _verify(setup.rotating, paths)  # the old key is no longer trusted


def test_a_rotation_signed_by_an_untrusted_key_is_refused_and_nothing_is_pinned(setup: Setup,
                                                                                 tmp_path: Path) -> None:
    paths = _installed(tmp_path, "1.2.0", setup.old.public)
    with pytest.raises(BundleRejected) as refused:
        _verify(setup.hostile, paths)
    assert refused.value.rule == "key-rotation-untrusted-signer"
    assert "not signed by the keys this host trusts now" in refused.value.message
    assert paths.trusted_keys.read_bytes() == setup.old.public


def test_an_install_that_stops_before_it_is_healthy_keeps_the_old_keys(setup: Setup, tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    options = InstallOptions(setup.rotating, InstallConfig(hostname="appliance.test"), setup.keyring,
                             ignored_checks=frozenset(CHECK_NAMES))
    with pytest.raises(StoppedBeforePlaybooks):
        install(options, paths, OfflineHost(), CourierAtWork(lambda: None))
    assert paths.installed_version() == "1.3.0"
    assert paths.trusted_keys.read_bytes() == setup.old.public


def test_a_downgrade_is_verified_only_with_its_authorization_and_it_is_in_the_receipt(
        setup: Setup, tmp_path: Path) -> None:
    with pytest.raises(BundleRejected) as refused:
        _verify(setup.later, _installed(tmp_path / "newer", "1.5.0", setup.new.public))
    assert "older than the installed 1.5.0" in refused.value.message
    assert "--downgrade-authorization FILE" in refused.value.hint

    authorization = tmp_path / "downgrade.json"
    document = authorize("1.5.0", "1.4.0", "rollback drill", valid_for=timedelta(days=1)).document()
    write_signed(authorization, document, (setup.new.fingerprint,), setup.new.home, None)
    newer = HostPaths(tmp_path / "newer")
    result = _verify(setup.later, newer, downgrade=authorization)
    assert result.receipt()["downgrade_authorization"]["reason"] == "rollback drill"
    with pytest.raises(BundleRejected, match="downgrade-mismatch"):
        _verify(setup.later, _installed(tmp_path / "other", "1.6.0", setup.new.public), downgrade=authorization)
