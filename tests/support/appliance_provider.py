"""The appliance Terraform provider, packaged for real (PyInstaller) and published into a mirror tree.

The provider zip is cached under .cache/provider by a digest of its inputs, so only the first
session after a change to appliance/provider pays for PyInstaller (about twenty seconds); the
mirror signing key is kept there too.
"""

from __future__ import annotations

from pathlib import Path

from appliance.provider.packaging import cached_zip, publish_provider
from mirror.signing import signing_key

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "provider"


def appliance_mirror_tree(out: Path) -> Path:
    """A tree at `out` with mirror/ and registry/ (what `appliance mirror build` makes) holding the provider."""
    publish_provider(out, CACHE, signing_key(CACHE / "mirror-signing"))
    return out


def provider_cache_env() -> dict[str, str]:
    """Environment for an `appliance server` subprocess: the shared provider cache, built now if cold.

    Built here, outside any health-check timeout, so the server itself only copies the zip into
    its (empty) mirror.
    """
    cached_zip(CACHE)
    # Building and importing the workspace base image is tested on its own (test_embedded.py).
    return {"APPLIANCE_PROVIDER_CACHE_DIR": str(CACHE), "APPLIANCE_BASE_IMAGE_AUTO": "false"}
