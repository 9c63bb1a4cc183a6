"""certificates: does any certificate of the internal CA expire within the renewal window (ECERT01, ECERT02)?"""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.health.context import HealthContext, finding, section
from appliance.pki.ca import CertificateAuthority
from appliance.sdk.health import HealthFinding, HealthSection, Severity


async def check(ctx: HealthContext) -> HealthSection:
    return await asyncio.to_thread(_check, ctx)


def _check(ctx: HealthContext) -> HealthSection:
    ca = CertificateAuthority.for_site(ctx.config)
    window = ctx.config.cert_renew_within
    if not ca.is_initialised():
        return section(ca="not initialised: the appliance serves no certificate of its own")
    now = ca.clock()
    findings: list[HealthFinding] = []
    for label, cert in (("root CA", ca.root_certificate()), ("intermediate CA", ca.intermediate_certificate())):
        if cert.not_valid_after_utc - now <= window:
            findings.append(finding("ECERT02", Severity.ERROR, f"The {label} expires on "
                                    f"{cert.not_valid_after_utc:%Y-%m-%d}. Plan a new CA (docs/pki.md) before then."))
    certificates: list[dict[str, Any]] = []
    for record in sorted(ca.records(), key=lambda r: r.name):
        state = record.state(now, window)
        if state not in ("valid", "expiring", "expired"):
            continue  # superseded and revoked ones serve nothing
        certificates.append({"name": record.name, "not_after": record.not_after.isoformat(), "state": state})
        if state == "expired":
            findings.append(finding("ECERT02", Severity.ERROR, f"Certificate {record.name} expired on "
                                    f"{record.not_after:%Y-%m-%d}. Run 'appliance pki renew {record.name}' now."))
        elif state == "expiring":
            findings.append(finding("ECERT01", Severity.WARNING, f"Certificate {record.name} expires on "
                                    f"{record.not_after:%Y-%m-%d}, within the renewal window "
                                    f"({window.days} days) and was not renewed. Run 'appliance pki renew "
                                    f"{record.name}' and check appliance-pki-renew.timer."))
    return section(findings, renew_within_days=window.days, certificates=certificates)
