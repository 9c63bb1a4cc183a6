"""The Distribution registry's config.yml: filesystem storage, TLS and token auth from the internal CA.

Written as JSON, which YAML parsers read as it is, so no YAML library is needed to write it, and
`set_read_only` can flip maintenance mode in place in whatever file a unit reads.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import OperatorError
from appliance.registry.tokens import ISSUER, SERVICE, token_url

EXECUTABLE = "docker-registry"  # Debian's package of CNCF Distribution 2.8 (`docker-registry serve CONFIG`)
INSTALL_HINT = "Install it as root: apt-get install docker-registry."


@dataclass(frozen=True)
class RegistrySettings:
    storage_dir: Path       # blobs and manifests
    address: str            # host:port the registry listens on
    access_url: str         # the control plane, whose token URL is the realm
    root_certificates: Path  # PEM bundle the token signing certificate must chain to (the CA root)
    tls_certificate: Path | None = None  # leaf + intermediate; None serves plain HTTP (tests of token auth only)
    tls_key: Path | None = None
    read_only: bool = False  # storage.maintenance.readonly: refuse pushes (while garbage collection runs)


def registry_config(settings: RegistrySettings, secret: str | None = None) -> dict[str, object]:
    http: dict[str, object] = {
        "addr": settings.address,
        # Signs upload state between requests; kept across rewrites so a restart keeps uploads valid.
        "secret": secret or secrets.token_urlsafe(32),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if settings.tls_certificate is not None and settings.tls_key is not None:
        http["tls"] = {"certificate": str(settings.tls_certificate), "key": str(settings.tls_key)}
    return {
        "version": "0.1",
        "log": {"level": "info", "formatter": "json", "fields": {"service": "registry"}},  # as every unit: JSON
        "storage": {
            "filesystem": {"rootdirectory": str(settings.storage_dir)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"readonly": {"enabled": settings.read_only}},
        },
        "http": http,
        "auth": {"token": {
            "realm": token_url(settings.access_url),
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(settings.root_certificates),
        }},
    }


def _load(path: Path) -> dict[str, object]:
    try:
        loaded = json.loads(path.read_text())
    except OSError as err:
        raise OperatorError(f"Cannot read the registry config {path}: {err.strerror}.",
                            "Write it with 'appliance registry write-config --output PATH'.") from err
    except ValueError as err:
        raise OperatorError(f"The registry config {path} is not the JSON the appliance writes ({err}).",
                            "Rewrite it with 'appliance registry write-config --output PATH'.") from err
    if not isinstance(loaded, dict):
        raise OperatorError(f"The registry config {path} is not a mapping.",
                            "Rewrite it with 'appliance registry write-config --output PATH'.")
    return loaded


def _existing_secret(path: Path) -> str | None:
    try:
        http = json.loads(path.read_text()).get("http", {})
    except (OSError, ValueError, AttributeError):
        return None
    secret = http.get("secret") if isinstance(http, dict) else None
    return secret if isinstance(secret, str) and secret else None


def _write_private(path: Path, document: dict[str, object]) -> None:
    """Replace atomically, mode 0600 from the start: the file holds the upload-state secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
    partial.replace(path)


def write_registry_config(settings: RegistrySettings, path: Path) -> Path:
    _write_private(path, registry_config(settings, _existing_secret(path)))
    return path


def is_read_only(path: Path) -> bool:
    storage = _load(path).get("storage")
    maintenance = storage.get("maintenance", {}) if isinstance(storage, dict) else {}
    readonly = maintenance.get("readonly", {}) if isinstance(maintenance, dict) else {}
    return bool(isinstance(readonly, dict) and readonly.get("enabled"))


def set_read_only(path: Path, enabled: bool) -> None:
    """Flip storage.maintenance.readonly in the file a registry reads; it takes effect at its next start."""
    document = _load(path)
    storage = document.setdefault("storage", {})
    if not isinstance(storage, dict):
        raise OperatorError(f"The registry config {path} has no storage section.",
                            "Rewrite it with 'appliance registry write-config --output PATH'.")
    maintenance = storage.setdefault("maintenance", {})
    maintenance["readonly"] = {"enabled": enabled}
    _write_private(path, document)


def storage_root(path: Path) -> Path:
    """The filesystem storage root a config names (what garbage collection measures)."""
    storage = _load(path).get("storage")
    filesystem = storage.get("filesystem", {}) if isinstance(storage, dict) else {}
    root = filesystem.get("rootdirectory") if isinstance(filesystem, dict) else None
    if not isinstance(root, str):
        raise OperatorError(f"The registry config {path} names no storage.filesystem.rootdirectory.",
                            "Rewrite it with 'appliance registry write-config --output PATH'.")
    return Path(root)
