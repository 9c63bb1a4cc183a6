"""The default workspace image: built twice from the same packages it has one digest, skopeo reads it, it works.

The reproducibility check is honest: two debootstraps into two rootfs (only the downloaded .debs
are shared, through the cache), two layer tars, two layouts: the one the other tests share and a
fresh one. Each build takes a minute or two.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bundles.build.base_image import DEFAULT_TAG, PACKAGES, UID, USER, build_base_image, preflight
from bundles.errors import BundleError
from tests.support.images import RELEASE_EPOCH, shared_base_image

REPO = Path(__file__).resolve().parents[4]
CACHE = REPO / ".cache" / "bundle"
NOBODY = 65534


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bundles", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env or dict(os.environ), check=False)


def _build(output: Path) -> Path:
    result = _cli("image", "build", "--output", str(output), "--cache-dir", str(CACHE),
                  env={**os.environ, "SOURCE_DATE_EPOCH": RELEASE_EPOCH})
    assert result.returncode == 0, result.stderr[-2000:]
    return output


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.fail("the base image is built as root with debootstrap: apt-get install debootstrap, run as root")
    # One side is the cached build the other tests share (built now if cold), the other a fresh build
    # with the same inputs, the same release date among them.
    work = tmp_path_factory.mktemp("image")
    return shared_base_image(), _build(work / "fresh")


def _manifest(layout: Path) -> tuple[str, dict[str, object]]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    return digest, json.loads((layout / "blobs/sha256" / digest.removeprefix("sha256:")).read_text())


def _layer(layout: Path) -> Path:
    _, manifest = _manifest(layout)
    layers = manifest["layers"]
    assert isinstance(layers, list) and len(layers) == 1
    return layout / "blobs/sha256" / layers[0]["digest"].removeprefix("sha256:")


def test_two_builds_from_the_same_packages_give_the_same_digest(layouts: tuple[Path, Path]) -> None:
    one, two = layouts
    assert (one / "index.json").read_bytes() == (two / "index.json").read_bytes()
    assert sorted(p.name for p in (one / "blobs/sha256").iterdir()) == \
        sorted(p.name for p in (two / "blobs/sha256").iterdir())
    assert _manifest(one)[0] == _manifest(two)[0]


def test_skopeo_reads_the_layout_as_a_valid_image(layouts: tuple[Path, Path], tmp_path: Path) -> None:
    layout = layouts[0]
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is missing: dev/system-packages.sh --test installs it")
    inspected = subprocess.run(["skopeo", "inspect", f"oci:{layout}:{DEFAULT_TAG}"], capture_output=True, text=True,
                               timeout=120, check=False)
    assert inspected.returncode == 0, inspected.stderr
    image = json.loads(inspected.stdout)
    assert image["Digest"] == _manifest(layout)[0]
    assert (image["Os"], image["Architecture"]) == ("linux", "amd64")
    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{layout}:{DEFAULT_TAG}"],
                                       capture_output=True, text=True, timeout=120, check=True).stdout)
    assert config["config"]["User"] == USER
    # copying reads every blob and checks it against its digest
    copied = subprocess.run(["skopeo", "copy", f"oci:{layout}:{DEFAULT_TAG}", f"dir:{tmp_path / 'copy'}"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert copied.returncode == 0, copied.stderr


def test_the_layer_is_normalised_and_carries_nothing_of_the_build(layouts: tuple[Path, Path]) -> None:
    with tarfile.open(_layer(layouts[0]), "r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert len({m.mtime for m in members}) == 1
        assert all(m.uname == "" and m.gname == "" for m in members)
        home = tar.getmember(f"home/{USER}")
        assert (home.uid, home.gid) == (UID, UID)
        for unique in ("etc/hostname", "etc/resolv.conf", "var/lib/dbus/machine-id"):
            assert unique not in names
        assert not [n for n in names if n.startswith(("etc/ssh/ssh_host_", "var/lib/apt/lists/", "var/cache/apt/"))
                    and not tar.getmember(n).isdir() and not n.endswith("/lock")]
        assert not [n for n in names if n.startswith(("dev/", "proc/", "tmp/", "run/"))]
        assert tar.getmember("etc/machine-id").size == 0
        sources = tar.extractfile("etc/apt/sources.list")
        assert sources is not None and "deb " not in sources.read().decode()


@contextmanager
def _extracted(layout: Path, into: Path) -> Iterator[Path]:
    into.mkdir()
    subprocess.run(["tar", "-xzf", str(_layer(layout)), "--numeric-owner", "-C", str(into)], check=True, timeout=300)
    os.mknod(into / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # as a container runtime provides it
    try:
        yield into
    finally:
        shutil.rmtree(into, ignore_errors=True)


def _inside(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "en_US.UTF-8"}
    return subprocess.run(["unshare", "--net", "chroot", str(root), *argv], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_the_image_has_the_tools_and_a_user_with_passwordless_sudo(layouts: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    with _extracted(layouts[0], tmp_path / "root") as root:
        as_dev = _inside(root, "runuser", "-u", USER, "--", "sh", "-c", "id -u; sudo -n id -u")
        assert as_dev.stdout.split() == [str(UID), "0"], as_dev.stderr
        tools = _inside(root, "sh", "-ec", "git --version; curl --version; ssh -V; less --version; vi --version; "
                        "python3 -c 'import locale; locale.setlocale(locale.LC_ALL, \"\")'; command -v ps top; "
                        "test -s /etc/ssl/certs/ca-certificates.crt")
        assert tools.returncode == 0, tools.stderr
        installed = _inside(root, "dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *PACKAGES)
        assert sorted(installed.stdout.splitlines()) == sorted(f"{p} installed" for p in PACKAGES), installed.stderr


@contextmanager
def _as_user(uid: int) -> Iterator[None]:
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


def test_without_root_the_build_is_refused_with_a_hint() -> None:
    with _as_user(NOBODY), pytest.raises(BundleError) as refused:
        preflight()
    assert "needs root" in str(refused.value) and "sudo" in refused.value.hint


def test_without_debootstrap_the_build_is_refused_before_any_work(tmp_path: Path) -> None:
    refused = _cli("image", "build", "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                   env={**os.environ, "PATH": str(tmp_path)}, timeout=60)
    assert refused.returncode == 1
    assert "debootstrap is not installed" in refused.stderr
    assert "apt-get install debootstrap" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_without_apt_sources_the_build_is_refused_naming_where_to_add_one(tmp_path: Path) -> None:
    (tmp_path / "apt/sources.list.d").mkdir(parents=True)
    with pytest.raises(BundleError) as refused:
        build_base_image(tmp_path / "out", tmp_path / "cache", apt_dir=tmp_path / "apt")
    assert "No apt source on this machine serves Debian bookworm" in str(refused.value)
    assert f"{tmp_path / 'apt'}/sources.list.d/" in refused.value.hint
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_layout_is_never_emptied(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    refused = _cli("image", "build", "--output", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), timeout=60)
    assert refused.returncode == 1
    assert "is not empty and is not an OCI image layout" in refused.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
