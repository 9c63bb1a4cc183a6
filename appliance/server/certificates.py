"""The server's own CA and certificate: created on first start, renewed before they expire."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from urllib.parse import urlsplit

from appliance.config import ServerConfig
from appliance.pki.ca import CertificateAuthority, IssueRequest
from appliance.pki.passphrase import ENV_VAR

log = logging.getLogger(__name__)

SERVER_CERT_NAME = "server"


def ensure_ca(config: ServerConfig) -> tuple[CertificateAuthority, bool]:
    """The CA, created now if missing; True when it was created.

    The root key's passphrase comes from APPLIANCE_PKI_PASSPHRASE. Without it (the quickstart)
    a random one is generated and stored beside the key, mode 0600, and `pki status` says so:
    an operator who wants the root offline runs `appliance pki export-root --remove`.
    """
    ca = CertificateAuthority.for_site(config)
    if ca.is_initialised():
        return ca, False
    given = os.environ.get(ENV_VAR)
    passphrase = given.encode() if given else secrets.token_urlsafe(32).encode()
    ca.init(passphrase, store_passphrase=not given)
    log.info("pki_initialised", extra={"pki_dir": str(config.pki_dir), "quickstart": not given})
    return ca, True


def wanted_names(config: ServerConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS names and IPs the server certificate must cover: the access URL's host, and loopback."""
    dns, ips = ["localhost"], ["127.0.0.1", "::1"]
    hosts = [urlsplit(config.access_url).hostname or ""]
    if config.tls_address and config.tls_address.host not in ("0.0.0.0", "::"):  # noqa: S104 -- comparing, not binding
        hosts.append(config.tls_address.host)
    for host in hosts:
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host.lower())
    return tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips))


def ensure_server_certificate(ca: CertificateAuthority, config: ServerConfig) -> bool:
    """Issue or renew the server certificate when missing, revoked, due, or not covering the access URL."""
    dns, ips = wanted_names(config)
    current = ca.current(SERVER_CERT_NAME)
    now = ca.clock()
    if current is None or current.status == "revoked":
        ca.issue(IssueRequest(SERVER_CERT_NAME, dns, ips))
    elif not current.covers(dns, ips) or current.not_after - now <= config.cert_renew_within:
        ca.renew(SERVER_CERT_NAME, dns_names=dns, ip_addresses=ips)
    else:
        return False
    log.info("server_certificate_issued", extra={"dns": ",".join(dns), "ips": ",".join(ips)})
    return True
