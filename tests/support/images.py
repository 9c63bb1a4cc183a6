"""The default workspace image for registry tests, and a TLS registry beside a live control plane.

The image is the one the test bundles carry: built once per machine and day into .cache/bundle/images
(bundles.build.base_image.cached_base_image, a minute or two) and reused by every test that needs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

from psycopg.conninfo import conninfo_to_dict

from appliance.config import ServerConfig
from appliance.pki.ca import CertificateAuthority
from appliance.registry import site
from appliance.registry.config import write_registry_config
from appliance.registry.process import RegistryProcess
from bundles.build.base_image import cached_base_image

REPO = Path(__file__).resolve().parents[2]
DEBS = REPO / ".cache" / "bundle"
CONTAINERS_CONF = '[engine]\nruntime = "runc"\n\n[containers]\ndefault_ulimits = []\n'


# The release date every bundle built by the tests carries (tests/e2e, test_offline_install): one image
# build per machine and day serves them all, and the registry, runtime and workspace tests too.
RELEASE_EPOCH = "1780000000"


def base_image() -> Path:
    """An OCI layout of the base image (ref debian-12): the bundles' cached one, built now if cold.

    APPLIANCE_TEST_BASE_IMAGE may name a layout built already (`appliance-bundle image build`).
    """
    if prebuilt := os.environ.get("APPLIANCE_TEST_BASE_IMAGE"):
        return Path(prebuilt)
    return shared_base_image()


def shared_base_image() -> Path:
    """The cached layout the test bundles carry, whatever APPLIANCE_TEST_BASE_IMAGE says."""
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = RELEASE_EPOCH  # part of the cache key, and the image's dates
    try:
        return cached_base_image(DEBS)
    finally:
        if previous is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous


def seed_server_cache(provider_cache_dir: Path) -> Path:
    """Point the embedded server's base image cache (beside its provider cache) at the tests' layout."""
    target = provider_cache_dir.parent / "base-image"
    if not (target / "index.json").is_file():
        if target.is_symlink():
            target.unlink()  # yesterday's layout, removed by the cache
        elif target.exists():
            shutil.rmtree(target)
        target.symlink_to(base_image())
    return target


@contextmanager
def tls_registry(config: ServerConfig) -> Iterator[RegistryProcess]:
    """The registry as `appliance server` runs it: the CA's certificate, the site's config file, a child."""
    site.ensure_certificate(CertificateAuthority(config.pki_dir), config)
    write_registry_config(site.settings(config), site.config_file(config))
    registry = site.embedded_process(config)
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


def cli_env(config: ServerConfig) -> dict[str, str]:
    """Environment for `appliance images|registry ...` against this site."""
    env = {**os.environ, "APPLIANCE_PKI_DIR": str(config.pki_dir), "APPLIANCE_DATA_DIR": str(config.registry_dir),
           "APPLIANCE_REGISTRY_ADDRESS": str(config.registry_address),
           "APPLIANCE_REGISTRY_DIR": str(config.registry_dir), "APPLIANCE_ACCESS_URL": config.access_url}
    if config.postgres_url:
        params = conninfo_to_dict(config.postgres_url)
        dbname = params.pop("dbname", "")
        env["APPLIANCE_POSTGRES_URL"] = f"postgresql:///{dbname}?{urlencode(params)}"
    return env


def podman(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """podman with its own storage under `root` and the runtime settings these hosts need, never the host's."""
    conf = root / "containers.conf"
    if not conf.exists():
        root.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONTAINERS_CONF)
    # podman refuses a runroot longer than 50 characters: a short one in /tmp, named after root.
    runroot = Path(tempfile.gettempdir()) / f"podman-run-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    return subprocess.run(["podman", "--root", str(root / "storage"), "--runroot", str(runroot), *args],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "CONTAINERS_CONF": str(conf)})
