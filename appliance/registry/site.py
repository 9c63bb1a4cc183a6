"""This appliance's registry from its ServerConfig: certificate, names, paths and settings (docs/adr/0018).

Layout under config.registry_dir (data_dir/registry):
    config.yml     Distribution's config (JSON), 0600: what `docker-registry serve` reads when embedded
    storage/       blobs and manifests (storage.filesystem.rootdirectory)
    registry.log   the embedded child's output
    registry.pid   the embedded child's pid, so `appliance registry gc` can restart it read-only
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from urllib.parse import urlsplit

from appliance.config import ServerConfig
from appliance.pki.ca import CertificateAuthority, IssueRequest
from appliance.pki.layout import PkiLayout
from appliance.registry.catalog import Catalog
from appliance.registry.config import RegistrySettings
from appliance.registry.process import RegistryProcess

log = logging.getLogger(__name__)

CERT_NAME = "registry"  # the CA's live/registry: the certificate Distribution serves TLS with
UNIT = "appliance-registry.service"  # the installed registry's systemd unit (the `registry` role)
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_IPS = ("127.0.0.1",)
_WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 -- comparing, not binding


def config_file(config: ServerConfig) -> Path:
    return config.registry_dir / "config.yml"


def storage_dir(config: ServerConfig) -> Path:
    return config.registry_dir / "storage"


def pid_file(config: ServerConfig) -> Path:
    return config.registry_dir / "registry.pid"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_names(config: ServerConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS names and IPs clients reach the registry by: its listen host (the access URL's host when it
    listens on every interface), and localhost + 127.0.0.1 when that is loopback or a wildcard."""
    host = config.registry_address.host
    hosts = [urlsplit(config.access_url).hostname or "localhost"] if host in _WILDCARDS else [host]
    dns: list[str] = []
    ips: list[str] = []
    for name in hosts:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name.lower())
    if host in _WILDCARDS or _is_loopback(host):
        dns.extend(_LOOPBACK_NAMES)
        ips.extend(_LOOPBACK_IPS)
    return tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips))


def internal_hosts(config: ServerConfig) -> frozenset[str]:
    """Every `host:port` an image reference may start with to name the internal registry."""
    dns, ips = host_names(config)
    port = config.registry_address.port
    return frozenset(f"[{name}]:{port}" if ":" in name else f"{name}:{port}" for name in (*dns, *ips))


def advertised_host(config: ServerConfig) -> str:
    """The `host:port` the appliance names in image references it prints."""
    dns, ips = host_names(config)
    name = ips[0] if ips else dns[0]
    return f"[{name}]:{config.registry_address.port}" if ":" in name else f"{name}:{config.registry_address.port}"


def ensure_certificate(ca: CertificateAuthority, config: ServerConfig) -> bool:
    """Issue or renew the registry's certificate when missing, revoked or not naming its hosts; True if changed."""
    dns, ips = host_names(config)
    current = ca.current(CERT_NAME)
    if current is None or current.status == "revoked":
        ca.issue(IssueRequest(CERT_NAME, dns, ips))
    elif not current.covers(dns, ips):
        ca.renew(CERT_NAME, dns_names=dns, ip_addresses=ips)
    else:
        return False
    log.info("registry_certificate_issued", extra={"dns": ",".join(dns), "ips": ",".join(ips)})
    return True


def settings(config: ServerConfig, read_only: bool = False) -> RegistrySettings:
    layout = PkiLayout(config.pki_dir)
    return RegistrySettings(storage_dir(config), str(config.registry_address), config.access_url,
                            layout.root_cert, layout.live_fullchain(CERT_NAME), layout.live_key(CERT_NAME),
                            read_only)


def embedded_process(config: ServerConfig) -> RegistryProcess:
    return RegistryProcess(config_file(config), config.registry_dir / "registry.log",
                           config.registry_address.host, config.registry_address.port,
                           tls=True, pid_file=pid_file(config))


def catalog(config: ServerConfig, ca: CertificateAuthority, subject: str) -> Catalog:
    """A reader of what the registry holds, with tokens this process signs for `subject`."""
    return Catalog(f"https://{advertised_host(config)}", ca, subject)
