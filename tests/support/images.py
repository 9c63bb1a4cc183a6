"""The default workspace image for registry tests, and a TLS registry beside a live control plane.

The image is built once into .cache/base-image (`appliance-bundle image build`, a minute or two, the
.debs cached in .cache/bundle) and reused by later sessions.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
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

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = REPO / ".cache" / "base-image"
DEBS = REPO / ".cache" / "bundle"
CONTAINERS_CONF = '[engine]\nruntime = "runc"\n\n[containers]\ndefault_ulimits = []\n'


def base_image() -> Path:
    """An OCI layout of the base image (ref debian-12), built now if the cache has none."""
    if (BASE_IMAGE / "index.json").is_file():
        return BASE_IMAGE
    partial = BASE_IMAGE.with_name("base-image.partial")
    shutil.rmtree(partial, ignore_errors=True)
    built = subprocess.run([sys.executable, "-m", "bundles", "image", "build", "--output", str(partial),
                            "--cache-dir", str(DEBS)], capture_output=True, text=True, timeout=1200, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    partial.rename(BASE_IMAGE)
    return BASE_IMAGE


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
