"""The installer installs what it verified: a bundle swapped on disk mid-install changes nothing or is refused."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from bundles.tarball import read_head
from installer.config import InstallConfig
from installer.errors import InstallError
from installer.install import MANIFEST_DIGEST_FILE, InstallOptions, install
from installer.paths import HostPaths
from installer.preflight import CHECK_NAMES, Check, HostProbe
from installer.ui import ConsoleUi
from tests.support.bundles import build_bundle, make_key, make_stage, sign_bundle

# Built today, so the bundles never expire under the test.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Releases:
    keyring: Path
    new: Path   # 1.2.0, what the operator runs the installer on
    old: Path   # 1.0.0, validly signed by the same key: what a hostile courier swaps in


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    root = tmp_path_factory.mktemp("releases")
    key = make_key(root, "release")
    keyring = root / "release-keys.asc"
    keyring.write_bytes(key.public)
    bundles = []
    for version, wheel in (("1.2.0", "2.0.0"), ("1.0.0", "1.0.0")):
        folder = root / version
        bundle = build_bundle(make_stage(folder, wheel_version=wheel), folder / "dist", version=version,
                              min_upgrade_from="1.0.0", created=TODAY)
        sign_bundle(bundle, key)
        bundles.append(bundle)
    return Releases(keyring, *bundles)


class StoppedBeforePlaybooks(Exception):
    """The test ends the install once the release is extracted: the playbooks would configure this host."""


class CourierAtWork(ConsoleUi):
    """The installer's own output; while the operator reads the preflight table, the bundle file is swapped."""

    def __init__(self, swap: Callable[[], None]) -> None:
        super().__init__(Console(file=io.StringIO()))
        self.swap = swap

    def checks(self, checks: list[Check]) -> None:
        super().checks(checks)
        self.swap()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if name.startswith("Run playbooks"):
            raise StoppedBeforePlaybooks
        with super().step(name):
            yield


class OfflineHost(HostProbe):
    """This machine, minus the network lookups; every check is ignored, so its verdicts do not matter."""

    def port_is_free(self, port: int) -> bool:
        return True

    def resolves(self, hostname: str) -> bool:
        return True


def _replace_path(bundle: Path, older: Path) -> Callable[[], None]:
    """A new file renamed over the path (cp then mv): the installer's open file still reads the old one."""
    def swap() -> None:
        shutil.copyfile(older, bundle.with_name(".swap"))
        bundle.with_name(".swap").replace(bundle)
    return swap


def _rewrite_in_place(bundle: Path, older: Path) -> Callable[[], None]:
    """The same file overwritten (cat older > bundle): the installer's open file now reads the older bytes."""
    def swap() -> None:
        with bundle.open("r+b") as raw:
            raw.write(older.read_bytes())
            raw.truncate()
    return swap


def _install(bundle: Path, keyring: Path, root: Path, swap: Callable[[], None]) -> HostPaths:
    paths = HostPaths(root)
    options = InstallOptions(bundle, InstallConfig(hostname="appliance.test"), keyring,
                             ignored_checks=frozenset(CHECK_NAMES))
    with pytest.raises(StoppedBeforePlaybooks):
        install(options, paths, OfflineHost(), CourierAtWork(swap))
    return paths


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.security(finding=3)
def test_a_bundle_replaced_after_verification_leaves_the_release_holding_what_was_verified(
        releases: Releases, tmp_path: Path) -> None:
    bundle = tmp_path / "appliance-1.2.0.bundle"
    shutil.copyfile(releases.new, bundle)
    verified_manifest, _, _ = read_head(releases.new)

    paths = _install(bundle, releases.keyring, tmp_path / "host", _replace_path(bundle, releases.old))

    assert _sha256(bundle) == _sha256(releases.old), "the swap did not happen"
    release = paths.release("1.2.0")
    recorded = (release / MANIFEST_DIGEST_FILE).read_text().strip()
    assert recorded == hashlib.sha256(verified_manifest).hexdigest()
    with tarfile.open(releases.new) as tar:
        expected = {i.name: hashlib.sha256(tar.extractfile(i).read()).hexdigest()  # type: ignore[union-attr]
                    for i in tar.getmembers() if not i.name.startswith("manifest.json")}
    found = {p.relative_to(release).as_posix(): _sha256(p) for p in release.rglob("*")
             if p.is_file() and p.name != MANIFEST_DIGEST_FILE}
    assert found == expected, "the release holds files the verified 1.2.0 manifest does not list"
    assert sorted(p.name for p in paths.releases.iterdir()) == ["1.2.0"]


@pytest.mark.security(finding=3)
def test_a_bundle_rewritten_in_place_after_verification_with_an_older_release_is_refused(
        releases: Releases, tmp_path: Path) -> None:
    bundle = tmp_path / "appliance-1.2.0.bundle"
    shutil.copyfile(releases.new, bundle)
    root = tmp_path / "host"

    with pytest.raises(InstallError) as refused:
        _install(bundle, releases.keyring, root, _rewrite_in_place(bundle, releases.old))

    assert refused.value.step == "Extract release"
    assert "the bundle file changed while it was being read" in refused.value.message
    assert "run the installer again" in refused.value.hint
    paths = HostPaths(root)
    assert list(paths.releases.iterdir()) == [], "nothing of either bundle may stay on the host"
    assert not paths.current.is_symlink()
