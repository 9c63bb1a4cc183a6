"""Debian packages for the target: a debootstrap baseline, the download closure, a flat repo index.

The closure is computed inside a copy of a freshly debootstrap'd system that has exactly the
recipe's baseline packages, so the bundle carries everything a fresh host lacks. The baseline
is cached (it takes about a minute to make) and reused for later builds and end-to-end tests.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bundles.build.apt_sources import debian_mirror, sources_list
from bundles.build.cache_lock import building
from bundles.errors import BundleError


def run_checked(argv: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise BundleError(f"{what} failed (exit {result.returncode}): {tail}",
                          "Check network access to the Debian mirror and free disk space, then build again.")
    return result  # type: ignore[no-any-return]


def require_tool(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise BundleError(f"{tool} is not installed.", f"Install it on the build machine: apt-get install {package}")


def baseline_rootfs(cache: Path, distribution: str, architecture: str, packages: tuple[str, ...]) -> Path:
    """A debootstrap'd rootfs with the baseline packages, made once and cached by its inputs."""
    require_tool("debootstrap", "debootstrap")
    key = hashlib.sha256(f"{distribution} {architecture} {' '.join(sorted(packages))}".encode()).hexdigest()[:12]
    root = cache / "debootstrap" / f"{distribution}-{architecture}-{key}"
    if (root / ".complete").exists():
        return root
    with building(root.parent):
        if (root / ".complete").exists():   # made by another build while this one waited
            return root
        shutil.rmtree(root, ignore_errors=True)
        mirror = debian_mirror(distribution)
        argv = ["debootstrap", "--variant=minbase", f"--arch={architecture}"]
        if packages:
            argv.append(f"--include={','.join(packages)}")
        run_checked([*argv, distribution, str(root), mirror.main], f"debootstrap {distribution}")
        (root / ".complete").write_text(datetime.now(UTC).isoformat() + "\n")
    return root


def download_closure(baseline: Path, work: Path, distribution: str, packages: tuple[str, ...], out: Path) -> None:
    """Download `packages` and everything they need that `baseline` lacks, into `out`."""
    chroot = work / "closure-root"
    shutil.rmtree(chroot, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    run_checked(["cp", "-a", "--reflink=auto", str(baseline), str(chroot)], "copying the baseline rootfs")
    try:
        (chroot / "etc/apt/sources.list").write_text(sources_list(debian_mirror(distribution), distribution))
        shutil.copyfile("/etc/resolv.conf", chroot / "etc/resolv.conf")
        archives = chroot / "var/cache/bundle-debs"
        archives.mkdir(parents=True, exist_ok=True)
        run_checked(["chroot", str(chroot), "apt-get", "update", "-q"], "apt-get update in the baseline")
        run_checked(["chroot", str(chroot), "apt-get", "install", "-y", "-q", "--download-only",
                     "--no-install-recommends", "-o", "Dir::Cache::archives=/var/cache/bundle-debs", *packages],
                    f"downloading {' '.join(packages)} with dependencies")
        out.mkdir(parents=True, exist_ok=True)
        for deb in sorted(archives.glob("*.deb")):
            shutil.copyfile(deb, out / deb.name)
    finally:
        shutil.rmtree(chroot, ignore_errors=True)
    if not any(out.glob("*.deb")):
        raise BundleError(f"No packages were downloaded for {' '.join(packages)}.", "Check the package names.")


def write_repository_index(debs: Path, *, distribution: str, architecture: str, date: datetime) -> None:
    """Packages, Packages.gz and Release for a flat repository apt can use as `deb [trusted=yes] file:DIR ./`.

    The bundle's signature, not apt's, is what makes this repository trusted.
    """
    require_tool("dpkg-scanpackages", "dpkg-dev")
    packages = run_checked(["dpkg-scanpackages", "--multiversion", "."], "dpkg-scanpackages", cwd=debs).stdout.encode()
    (debs / "Packages").write_bytes(packages)
    (debs / "Packages.gz").write_bytes(gzip.compress(packages, compresslevel=9, mtime=0))
    lines = ["Origin: appliance-bundle", "Label: appliance", "Suite: appliance", f"Codename: {distribution}",
             f"Date: {date.astimezone(UTC):%a, %d %b %Y %H:%M:%S UTC}", f"Architectures: {architecture} all",
             "Components: main", "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        data = (debs / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (debs / "Release").write_text("\n".join(lines) + "\n")
