"""The default workspace image: Debian 12 by debootstrap, a `dev` user, scrubbed, as a reproducible OCI layout.

Runs on the connected build machine, as root (debootstrap and chroot need it). The Debian mirror
is the one this machine's apt sources already use. Everything one build would make unique (the
machine id, host keys, apt lists and caches, logs, the build host's name and resolver) is
removed, and every mtime is the image's epoch, so two builds from the same packages give the
same manifest digest (docs/adr/0016-reproducible-base-image.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bundles.build import oci_image
from bundles.build.apt_sources import APT_DIR, DebianMirror, debian_mirror, sources_list
from bundles.build.assemble import build_time
from bundles.build.cache_lock import building
from bundles.build.debs import require_tool, run_checked
from bundles.build.oci_image import Descriptor, ImageConfig, write_layout
from bundles.errors import BundleError

DISTRIBUTION = "bookworm"
ARCHITECTURE = "amd64"
DEFAULT_TAG = "debian-12"
# What a developer expects in a workspace; the minbase variant brings only apt and dpkg's essentials.
PACKAGES = ("bash", "git", "curl", "ca-certificates", "openssh-client", "sudo", "python3", "locales", "less",
            "vim-tiny", "procps")
USER, UID = "dev", 1000   # the workspace user, as Coder's images have `coder`; passwordless sudo
LOCALE = "en_US.UTF-8"
CONFIG = ImageConfig(
    user=USER,
    env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", f"LANG={LOCALE}", f"HOME=/home/{USER}"),
    cmd=("/bin/bash",),
    working_dir=f"/home/{USER}",
    labels={"org.opencontainers.image.title": "appliance workspace base",
            "org.opencontainers.image.description": "Debian 12 with a passwordless-sudo user 'dev' (uid 1000)"},
)
# Left by one build and unique to it, or naming the build host: removed from the rootfs.
SCRUBBED = (
    "etc/hostname", "etc/resolv.conf",            # the build host's; the container runtime provides its own
    "etc/ssh/ssh_host_*",                          # host keys, were any made, must be made per container
    "etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-", "etc/subuid-", "etc/subgid-",
    "var/lib/dbus/machine-id", "var/lib/systemd/random-seed",
    "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*",
    "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "var/cache/ldconfig/aux-cache",
    "var/log/**/*.log", "var/log/apt/*", "var/log/journal/*", "root/.bash_history",
)
# No mirror of the build machine's: an offline site points this at its own mirror, if it has one.
SOURCES_LIST = "# Add this site's Debian mirror here to install more packages with apt.\n"


@dataclass(frozen=True)
class BuiltImage:
    manifest: Descriptor
    tag: str
    created: datetime


def preflight(apt_dir: Path = APT_DIR) -> DebianMirror:
    """Refuse before any work without root, debootstrap or a Debian mirror; return the mirror."""
    if os.geteuid() != 0:
        raise BundleError("Building the base image needs root (debootstrap and chroot do).",
                          "Run it as root on the build machine, e.g. sudo appliance-bundle image build ...")
    require_tool("debootstrap", "debootstrap")
    return debian_mirror(DISTRIBUTION, apt_dir)


def _chroot(root: Path, *argv: str, epoch: int | None = None) -> None:
    env = {"PATH": CONFIG.env[0].removeprefix("PATH="), "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)   # shadow's useradd dates the password change with it
    run_checked(["chroot", str(root), *argv], f"{argv[0]} in the image", env=env)


def debootstrap(root: Path, mirror: str, debs_cache: Path) -> None:
    """A minbase Debian with PACKAGES; downloaded .debs are kept in debs_cache for the next build."""
    debs_cache.mkdir(parents=True, exist_ok=True)
    run_checked(["debootstrap", "--variant=minbase", f"--arch={ARCHITECTURE}", f"--include={','.join(PACKAGES)}",
                 f"--cache-dir={debs_cache.resolve()}", DISTRIBUTION, str(root), mirror],
                f"debootstrap {DISTRIBUTION}")


def upgrade(root: Path, mirror: DebianMirror) -> None:
    """Install the updates and security fixes of the mirror's other suites (debootstrap reads only the main one)."""
    (root / "etc/apt/sources.list").write_text(sources_list(mirror, DISTRIBUTION))
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    _chroot(root, "apt-get", "update", "-q")
    _chroot(root, "apt-get", "upgrade", "-y", "-q", "--no-install-recommends")
    _chroot(root, "apt-get", "clean")


def configure(root: Path, epoch: int) -> None:
    """The locale, the `dev` user with passwordless sudo, and no apt source of the build machine's."""
    (root / "etc/locale.gen").write_text(f"{LOCALE} UTF-8\n")
    _chroot(root, "locale-gen")
    (root / "etc/default/locale").write_text(f"LANG={LOCALE}\n")
    _chroot(root, "useradd", "--uid", str(UID), "--user-group", "--groups", "sudo", "--create-home",
            "--shell", "/bin/bash", USER, epoch=epoch)
    sudoers = root / "etc/sudoers.d" / USER
    sudoers.write_text(f"{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    (root / "etc/apt/sources.list").write_text(SOURCES_LIST)


def _date_shadow(root: Path, epoch: int) -> None:
    """Every password's last change (days since 1970) becomes the image's day, not the build's."""
    shadow = root / "etc/shadow"
    lines = []
    for line in shadow.read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2]:
            fields[2] = str(epoch // 86400)
        lines.append(":".join(fields))
    shadow.write_text("\n".join(lines) + "\n")


def scrub(root: Path, epoch: int) -> None:
    """Remove what is unique to this build (SCRUBBED); an empty machine-id means "set at first boot"."""
    _date_shadow(root, epoch)
    for pattern in SCRUBBED:
        for path in sorted(root.glob(pattern)):
            if path.is_file() or path.is_symlink():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
    (root / "etc/machine-id").write_text("")


def image_epoch(root: Path) -> datetime:
    """SOURCE_DATE_EPOCH when set, else the build date of the newest package: the package set fixes it."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return build_time()
    changelogs = list(root.glob("usr/share/doc/*/changelog.Debian.gz"))
    if not changelogs:
        raise BundleError(f"No package changelogs in {root}/usr/share/doc to date the image by.",
                          "Set SOURCE_DATE_EPOCH to the image's date in seconds, then build again.")
    return datetime.fromtimestamp(int(max(p.lstat().st_mtime for p in changelogs)), UTC)


def _clear_output(output: Path) -> None:
    """Make output an empty folder, refusing to empty one that holds anything but an OCI layout."""
    if output.is_dir() and any(output.iterdir()):
        if not (output / "oci-layout").is_file():
            raise BundleError(f"{output} is not empty and is not an OCI image layout.",
                              "Pass --output a new or empty folder (or a layout an earlier build wrote).")
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)


def build_base_image(output: Path, cache: Path, *, tag: str = DEFAULT_TAG, apt_dir: Path = APT_DIR) -> BuiltImage:
    """Build the default workspace image into output (an OCI layout); cache keeps downloaded .debs."""
    mirror = preflight(apt_dir)
    _clear_output(output)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="image-", dir=cache))
    try:
        root = work / "rootfs"
        debootstrap(root, mirror.main, cache / "image-debs")
        upgrade(root, mirror)
        created = image_epoch(root)
        configure(root, int(created.timestamp()))
        scrub(root, int(created.timestamp()))
        manifest = write_layout(root, output, config=CONFIG, architecture=ARCHITECTURE, created=created,
                                tag=tag, created_by=f"appliance-bundle image build ({' '.join(PACKAGES)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BuiltImage(manifest, tag, created)


def _cache_key(mirror: DebianMirror, tag: str, today: str) -> str:
    """What fixes the image: the code that builds it, its packages, tag and date, the mirror and the day."""
    code = b"".join(Path(module).read_bytes() for module in (__file__, oci_image.__file__))
    inputs = f"{mirror} {tag} {' '.join(PACKAGES)} {os.environ.get('SOURCE_DATE_EPOCH', '')} {today}"
    return hashlib.sha256(code + inputs.encode()).hexdigest()[:16]


def cached_base_image(cache: Path, *, tag: str = DEFAULT_TAG, apt_dir: Path = APT_DIR) -> Path:
    """The base image's layout, built once per set of inputs (per day: the mirror moves on) and kept in cache.

    Building takes about two minutes, so every bundle built on one machine the same day (the CI
    run's integration and e2e bundles among them) carries the one image built first.
    """
    mirror = preflight(apt_dir)
    images = cache / "images"
    key = _cache_key(mirror, tag, datetime.now(UTC).date().isoformat())
    layout, done = images / f"{tag}-{key}", images / f"{tag}-{key}.complete"
    if done.is_file() and (layout / "index.json").is_file():
        return layout
    with building(images):
        if done.is_file() and (layout / "index.json").is_file():   # made by another build while this one waited
            return layout
        build_base_image(layout, cache, tag=tag, apt_dir=apt_dir)
        done.write_text(f"{layout.name}\n")
        for stale in images.glob(f"{tag}-*"):   # older inputs' images: a layout is over 100 MB
            if stale.name not in (layout.name, done.name):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return layout
