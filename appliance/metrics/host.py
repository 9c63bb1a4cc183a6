"""Metrics read from this host's files at scrape time: build, certificates, backups, bundle, registry.

Each family is left out when what it reads is absent (no CA yet, no installer receipt in embedded
mode, a backups folder this user may not read): a missing series says "unknown", a zero would lie.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance import buildinfo
from appliance.config import ServerConfig
from appliance.errors import OperatorError
from appliance.health.installer_files import backup_summary, latest_receipt, newest_backup, timestamp
from appliance.pki.ca import CertificateAuthority
from appliance.registry.site import advertised_host, storage_dir

log = logging.getLogger("appliance.metrics")

REGISTRY_TIMEOUT = 2.0
# Distribution's storage: one `link` file per tag, rewritten when the tag is pushed.
TAG_LINKS = "docker/registry/v2/repositories/**/_manifests/tags/*/current/link"


class HostCollector(Collector):
    def __init__(self, config: ServerConfig, ca: CertificateAuthority) -> None:
        self.config = config
        self.ca = ca

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        yield build_info()
        for part in (certificates(self.ca, now), backups(backup_summary(self.config), now),
                     bundle(latest_receipt(self.config), now), registry(self.config, self.ca)):
            try:
                yield from part
            except (OSError, OperatorError, ValueError) as err:  # unreadable: left out, the rest still answers
                log.info("metrics_source_unreadable", extra={"error": str(err)})


def build_info() -> Metric:
    family = GaugeMetricFamily("coderd_build_info", "This release: always 1.", labels=["version", "revision"])
    family.add_metric([buildinfo.version(), buildinfo.commit()], 1)
    return family


def certificates(ca: CertificateAuthority, now: datetime) -> Iterator[Metric]:
    """Seconds until each certificate the CA knows expires: root, intermediate, and each current one."""
    if not ca.is_initialised():
        return
    family = GaugeMetricFamily("appliance_certificate_expiry_seconds",
                               "Seconds until the certificate expires (negative once expired).", labels=["name"])
    for name, cert in (("root-ca", ca.root_certificate()), ("intermediate-ca", ca.intermediate_certificate())):
        family.add_metric([name], (cert.not_valid_after_utc - now).total_seconds())
    for record in ca.records():
        if record.status == "valid":
            family.add_metric([record.name], (record.not_after - now).total_seconds())
    yield family


def backups(summary: dict[str, Any] | None, now: datetime) -> Iterator[Metric]:
    """From the installer's world-readable summary (the backups folder itself is root's alone)."""
    taken = newest_backup(summary)
    if taken is None:
        return
    yield GaugeMetricFamily("appliance_backup_last_success_timestamp_seconds",
                            "When the newest complete backup was taken (Unix time).", value=taken.timestamp())
    yield GaugeMetricFamily("appliance_backup_age_seconds", "Seconds since the newest complete backup.",
                            value=(now - taken).total_seconds())


def bundle(receipt: dict[str, Any] | None, now: datetime) -> Iterator[Metric]:
    """Seconds until the installed bundle expires; absent where no installer ran (embedded mode)."""
    expires = timestamp(receipt.get("expires_at")) if receipt else None
    if expires is None:
        return
    yield GaugeMetricFamily("appliance_bundle_expiry_seconds",
                            "Seconds until the installed bundle expires (negative once expired).",
                            value=(expires - now).total_seconds())


def registry(config: ServerConfig, ca: CertificateAuthority) -> Iterator[Metric]:
    """Whether the registry answers its API over TLS, and when a tag was last pushed (when its storage is here)."""
    yield GaugeMetricFamily("appliance_registry_up", "1 when the registry answers /v2/ over TLS.",
                            value=1 if _registry_answers(config, ca.layout.root_cert) else 0)
    root = storage_dir(config)
    if root.is_dir():
        stamps = [link.stat().st_mtime for link in root.glob(TAG_LINKS)]
        if stamps:
            yield GaugeMetricFamily("appliance_registry_last_push_timestamp_seconds",
                                    "When a tag was last pushed to the registry (Unix time).", value=max(stamps))


def _registry_answers(config: ServerConfig, root_cert: Path) -> bool:
    if not root_cert.is_file():
        return False  # no CA yet: nothing to trust the registry's certificate with
    try:
        answer = requests.get(f"https://{advertised_host(config)}/v2/", timeout=REGISTRY_TIMEOUT,
                              verify=str(root_cert))
    except requests.RequestException:
        return False
    return answer.status_code in (200, 401)  # 401: it wants a token, as it should
