"""A real bundle, built and signed, installs on a fresh Debian 12 with no network at all.

This builds the product bundle from bundles/appliance.toml exactly as a release would (wheels,
debootstrap baseline, apt closure, PyInstaller installer), verifies it, and installs its debs
and wheels inside a fresh debootstrap'd chroot in its own network namespace. The debootstrap
baseline is cached in .cache/bundle, so later runs in the same checkout reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import __version__ as appliance_version
from bundles.build.base_image import cached_base_image
from bundles.build.debs import baseline_rootfs
from bundles.recipe import load_recipe
from bundles.tarball import read_head
from bundles.verify import TrustPolicy, verify_bundle
from tests.support.bundles import make_key, sign_bundle

REPO = Path(__file__).resolve().parents[4]
CACHE = REPO / ".cache" / "bundle"
EPOCH = "1780000000"   # SOURCE_DATE_EPOCH of the release built here


def _in_chroot(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script inside root, in a fresh network namespace: only a downed loopback exists."""
    env = {"PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
           "LANG": "C.UTF-8"}
    return subprocess.run(["unshare", "--net", "chroot", str(root), "sh", "-ec", script], capture_output=True,
                          text=True, timeout=900, env=env, check=False)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("release")
    recipe = str(REPO / "bundles/appliance.toml")
    result = subprocess.run([sys.executable, "-m", "bundles", "build", "--recipe", recipe,
                             "--output", str(work / "dist"), "--cache-dir", str(CACHE)],
                            capture_output=True, text=True, timeout=1800, cwd=REPO, check=False,
                            env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH})
    assert result.returncode == 0, result.stderr[-2000:]
    bundle = work / "dist" / f"appliance-{appliance_version}.bundle"
    key = make_key(work, "release")
    sign_bundle(bundle, key)
    verify_bundle(bundle, TrustPolicy(key.public), extract_to=work / "extracted")
    return work / "extracted"


@pytest.fixture
def fresh_host(tmp_path: Path) -> Iterator[Path]:
    recipe = load_recipe(REPO / "bundles/appliance.toml")
    baseline = baseline_rootfs(CACHE, recipe.distribution, recipe.architecture, recipe.baseline_packages)
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(baseline), str(root)], check=True)
    # Services must not start inside a chroot; the installer issue boots a real systemd host instead.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_host_really_has_no_network(fresh_host: Path) -> None:
    probe = _in_chroot(fresh_host, "python3 -c \"import socket; socket.create_connection(('192.0.2.1', 80), 3)\"")
    assert probe.returncode != 0 and "Network is unreachable" in probe.stderr


def test_debs_install_offline_from_the_bundle_repository_alone(extracted: Path, fresh_host: Path) -> None:
    shutil.copytree(extracted / "debs", fresh_host / "opt/appliance-repo")
    (fresh_host / "etc/apt/sources.list").write_text("deb [trusted=yes] file:/opt/appliance-repo ./\n")
    for extra in (fresh_host / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    result = _in_chroot(fresh_host, "apt-get update -q && apt-get install -y -q --no-install-recommends "
                                    "postgresql-15 nginx python3-venv")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (fresh_host / "usr/lib/postgresql/15/bin/postgres").exists()
    assert (fresh_host / "usr/sbin/nginx").exists()
    status = (fresh_host / "var/lib/dpkg/status").read_text()
    assert "Package: python3-venv\nStatus: install ok installed" in status


def test_wheels_install_with_no_index_and_both_commands_run(extracted: Path, fresh_host: Path) -> None:
    shutil.copytree(extracted / "debs", fresh_host / "opt/appliance-repo")
    shutil.copytree(extracted / "wheels", fresh_host / "opt/wheels")
    shutil.copy2(extracted / "installer/appliance-installer", fresh_host / "usr/local/bin/appliance-installer")
    (fresh_host / "etc/apt/sources.list").write_text("deb [trusted=yes] file:/opt/appliance-repo ./\n")
    for extra in (fresh_host / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    result = _in_chroot(fresh_host, "apt-get update -q && apt-get install -y -q --no-install-recommends python3-venv\n"
                                    "python3 -m venv /opt/venv\n"
                                    "/opt/venv/bin/pip install --no-index --find-links /opt/wheels appliance\n"
                                    "/opt/venv/bin/appliance --version\n"
                                    "appliance-installer --help\n"
                                    "appliance-installer __ansible-playbook --version")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"appliance, version {appliance_version}" in result.stdout
    # The PyInstaller executable runs with no Python packages on the host, Ansible included.
    assert "Install the appliance on an offline Debian 12 host" in result.stdout
    assert "ansible-playbook [core 2.19" in result.stdout


def test_the_bundle_carries_the_base_image_hashed_in_the_manifest_and_listed_in_the_sbom(
        extracted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = extracted.parent / "dist" / f"appliance-{appliance_version}.bundle"
    members = {m["path"]: m for m in json.loads(read_head(bundle)[0])["members"]}
    layout = extracted / "images" / "debian-12"
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    for blob in (layout / "blobs" / "sha256").iterdir():   # content-addressed, and each one a hashed member
        member = members[blob.relative_to(extracted).as_posix()]
        assert (member["sha256"], member["role"]) == (blob.name, "image")
    assert f"images/debian-12/blobs/sha256/{digest.removeprefix('sha256:')}" in members
    sbom = json.loads((extracted / "sbom.cdx.json").read_text())
    assert [c["name"] for c in sbom["components"] if c["type"] == "container"] == ["debian-12"]
    inspected = subprocess.run(["skopeo", "inspect", f"oci:{layout}:debian-12"], capture_output=True, text=True,
                               check=False)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == digest
    # The build came from the cache, keyed by its inputs: asking again with the same ones builds nothing new.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    cached = cached_base_image(CACHE)
    assert json.loads((cached / "index.json").read_text())["manifests"][0]["digest"] == digest
    assert len(list((CACHE / "images").glob("debian-12-*.complete"))) == 1
