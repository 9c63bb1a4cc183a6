"""E2E fixtures: a fresh, network-less Debian 12 host booted with systemd under systemd-nspawn.

The baseline is the same cached debootstrap rootfs the bundle's apt closure is computed against
(bundles/appliance.toml's target.baseline_packages), so a test host is exactly what the bundle
expects to find. Each module gets its own copy, powered off and removed afterwards; its tests
share it (a boot is seconds of a 2-core CI run each), so they leave what they add under names
and ports of their own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundles.build.debs import baseline_rootfs
from bundles.recipe import load_recipe
from tests.e2e.appliance_host import Release, build_release
from tests.support.nspawn import OfflineHost
from tests.support.nspawn import offline_host as boot_offline_host

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "bundle"


@pytest.fixture(scope="session")
def baseline() -> Path:
    """The recipe's debootstrap baseline (made once, about a minute, then cached in .cache/bundle)."""
    if os.geteuid() != 0:
        pytest.fail("e2e tests boot systemd-nspawn containers and must run as root")
    for tool, package in (("systemd-nspawn", "systemd-container"), ("nsenter", "util-linux"),
                          ("debootstrap", "debootstrap")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install {package}")
    recipe = load_recipe(REPO / "bundles/appliance.toml")
    return baseline_rootfs(CACHE, recipe.distribution, recipe.architecture, recipe.baseline_packages)


@pytest.fixture(scope="module")
def offline_host(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineHost]:
    """A freshly booted copy of the baseline with systemd as PID 1 and only loopback networking, one per module."""
    with boot_offline_host(baseline, tmp_path_factory.mktemp("offline") / "host") as host:
        print(f"offline host {host.machine}: copy {host.copy_seconds:.1f} s + boot {host.boot_seconds:.1f} s")
        yield host


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Release:
    """The product bundle at VERSION, built once per run for every e2e module that installs it."""
    return build_release(tmp_path_factory, request)
