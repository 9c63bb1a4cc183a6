"""The console's vendored npm files: extracted from a pinned, hash-checked tarball; a second run does nothing."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from bundles.build.console_assets import MANIFEST, VENDOR_DIR, NpmPin, vendor
from bundles.errors import BundleError

pytestmark = pytest.mark.unit


def _tarball(cache: Path, pin_name: str, version: str, body: bytes) -> tuple[Path, str]:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{pin_name.lstrip('@').replace('/', '-')}-{version}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("package/lib/thing.js")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_pinned_files_are_extracted_and_recorded_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _, digest = _tarball(cache, "@scope/thing", "1.0.0", b"console.log(1)")
    pins = (NpmPin("@scope/thing", "1.0.0", digest, {"package/lib/thing.js": "thing.js"}),)
    target = vendor(tmp_path, cache, pins)
    assert target == tmp_path / VENDOR_DIR
    assert (target / "thing.js").read_bytes() == b"console.log(1)"
    assert json.loads((target / MANIFEST).read_text()) == [
        {"name": "@scope/thing", "version": "1.0.0", "sha256": digest, "tarball": "scope-thing-1.0.0.tgz"}]
    (cache / "scope-thing-1.0.0.tgz").unlink()  # a second run needs neither the cache nor npm
    before = (target / "thing.js").stat().st_mtime_ns
    vendor(tmp_path, cache, pins)
    assert (target / "thing.js").stat().st_mtime_ns == before


def test_a_cached_tarball_unlike_the_pin_without_npm_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    _tarball(cache, "thing", "1.0.0", b"tampered")
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))  # the cached file is wrong and npm cannot refetch
    with pytest.raises(BundleError) as refused:
        vendor(tmp_path, cache, (NpmPin("thing", "1.0.0", "0" * 64, {"package/lib/thing.js": "thing.js"}),))
    assert "npm is missing" in refused.value.message
    assert "apt-get install npm" in refused.value.hint
    assert not (tmp_path / VENDOR_DIR / "thing.js").exists()
