"""Build side: package this provider as a release zip and publish it into a mirror tree.

Never imported by the provider itself. PyInstaller takes twenty seconds or more, so a build is cached
under CACHE/<digest>/ by a digest of everything that goes into it (this package's sources, the
appliance, tf, PyInstaller and Python versions); an unchanged provider is a file copy.

    OUT/appliance.internal/appliance/appliance/terraform-provider-appliance_<version>_linux_amd64.zip

is the layout `appliance mirror build --from OUT` takes; OUT/appliance.internal is the
NAMESPACE/TYPE layout `--registry` takes.
"""

from __future__ import annotations

import filecmp
import hashlib
import platform
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from appliance import __version__
from appliance.build_cache import cached_build
from appliance.provider import HOSTNAME, NAMESPACE, SOURCE, TYPE
from mirror.build import build_mirror, existing_archives
from mirror.hashes import dirhash_h1
from mirror.layout import MIRROR, PROVIDERS_URL_PATH, REGISTRY, archive_name
from mirror.package import build_provider_zip
from mirror.signing import SigningKey

PACKAGE_DIR = Path(__file__).resolve().parent
ENTRY = PACKAGE_DIR / "__main__.py"
OS, ARCH = "linux", "amd64"
# Modules outside appliance/provider that the provider imports (relative to appliance/).
BUNDLED_SDK = ("__init__.py", "sdk/__init__.py", "sdk/base.py", "sdk/runtime.py")


def distribution_version(distribution: str) -> str:
    """An installed distribution's version, or "absent": part of a build's cache digest."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "absent"


def inputs_digest() -> str:
    """Changes whenever the built provider could: its sources, the tools that build it, the libraries it bundles."""
    hasher = hashlib.sha256(f"{SOURCE} {__version__} {OS}_{ARCH} python {platform.python_version()} "
                            f"tf {distribution_version('tf')} pyinstaller {distribution_version('pyinstaller')} "
                            f"re2 {distribution_version('google-re2')}".encode())
    for source in sorted(PACKAGE_DIR.glob("*.py")):
        if source.name == Path(__file__).name:
            continue  # this module is not part of the provider
        hasher.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    # The provider imports the appliance package's __init__ and the sdk's runtime shapes (with pydantic).
    hasher.update(f"pydantic {distribution_version('pydantic')}".encode())
    for bundled in BUNDLED_SDK:
        hasher.update(bundled.encode() + b"\0" + (PACKAGE_DIR.parent / bundled).read_bytes() + b"\0")
    return hasher.hexdigest()[:16]


def cache_path(cache_dir: Path) -> Path:
    """Where the provider zip for the current sources is (or will be) kept in `cache_dir`."""
    return cache_dir / inputs_digest() / archive_name(TYPE, __version__, OS, ARCH)


def cached_zip(cache_dir: Path) -> Path:
    """The provider zip for the current sources, built into `cache_dir` unless already there."""
    return cached_build(cache_path(cache_dir), lambda scratch: build_provider_zip(
        ENTRY, TYPE, __version__, scratch, os_name=OS, arch=ARCH, work=scratch))


def package_provider(out_dir: Path, cache_dir: Path) -> Path:
    """Write the provider zip into OUT_DIR/HOSTNAME/NAMESPACE/TYPE/ and return its path."""
    cached = cached_zip(cache_dir)
    target = out_dir / HOSTNAME / NAMESPACE / TYPE / cached.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    return target


@dataclass(frozen=True)
class Published:
    archive: Path  # in the tree's network mirror
    added: int     # packages the tree did not have before (mirror and registry)
    replaced: int  # packages of this provider and version that a development rebuild replaced


def _copies(mirror_dir: Path, name: str, *, with_registry: bool) -> list[Path]:
    """Where the tree keeps our package: its network mirror, and its registry when we publish there."""
    mirrored = mirror_dir / MIRROR / HOSTNAME / NAMESPACE / TYPE / name
    registered = mirror_dir / REGISTRY / PROVIDERS_URL_PATH.strip("/") / NAMESPACE / TYPE / __version__ / name
    return [mirrored, registered] if with_registry else [mirrored]


def _stale(mirror_dir: Path, fresh: Path, *, with_registry: bool) -> list[Path]:
    """Our own packages at this version whose contents differ from `fresh` (the sources changed since)."""
    h1 = dirhash_h1(fresh)
    mirrored, registered = existing_archives(mirror_dir) if mirror_dir.is_dir() else ([], [])
    candidates = [*mirrored, *(registered if with_registry else [])]
    return [a.path for a in candidates
            if a.namespace == NAMESPACE and a.type == TYPE and a.version == __version__ and a.h1 != h1
            and a.hostname in (HOSTNAME, "")]


def publish_provider(mirror_dir: Path, cache_dir: Path, key: SigningKey | None) -> Published:
    """Add the provider to the tree at `mirror_dir`: to its mirror, and to its registry when `key` is given.

    The same version built from changed sources replaces the one in the tree (the appliance owns
    this provider; a released version is only ever built from one commit). If the build fails,
    the tree is left as it was. When the tree already holds this very zip, nothing is rewritten.
    """
    cached = cached_zip(cache_dir)
    copies = _copies(mirror_dir, cached.name, with_registry=key is not None)
    if all(c.is_file() and filecmp.cmp(c, cached, shallow=False) for c in copies):
        return Published(copies[0], 0, 0)
    work = Path(tempfile.mkdtemp(prefix=".provider-", dir=_made(mirror_dir.resolve().parent)))
    try:
        archive = package_provider(work / "packages", cache_dir)
        stale = _stale(mirror_dir, archive, with_registry=key is not None)
        aside = [path.rename(work / f"stale-{index}.zip") for index, path in enumerate(stale)]
        try:
            registries = [work / "packages" / HOSTNAME] if key else []
            result = build_mirror(mirror_dir, [work / "packages"], registries, key)
        except BaseException:
            for original, moved in zip(stale, aside, strict=True):
                moved.rename(original)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Published(copies[0], result.added, len(stale))


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
