"""The Distribution registry's config.yml: filesystem storage, and token auth that trusts the internal CA.

Written as JSON, which YAML parsers read as it is, so no YAML library is needed to write it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from appliance.registry.tokens import ISSUER, SERVICE, token_url

EXECUTABLE = "docker-registry"  # Debian's package of CNCF Distribution 2.8 (`docker-registry serve CONFIG`)
INSTALL_HINT = "Install it as root: apt-get install docker-registry."


@dataclass(frozen=True)
class RegistrySettings:
    storage_dir: Path       # blobs and manifests
    address: str            # host:port the registry listens on
    access_url: str         # the control plane, whose token URL is the realm
    root_certificates: Path  # PEM bundle the token signing certificate must chain to (the CA root)


def registry_config(settings: RegistrySettings) -> dict[str, object]:
    return {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(settings.storage_dir)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": settings.address,
            # Signs upload state between requests; fixed per config so a restart keeps uploads valid.
            "secret": secrets.token_urlsafe(32),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {"token": {
            "realm": token_url(settings.access_url),
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(settings.root_certificates),
        }},
    }


def write_registry_config(settings: RegistrySettings, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(registry_config(settings), indent=2) + "\n")
    path.chmod(0o600)  # holds the upload-state secret
    return path
