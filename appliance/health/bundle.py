"""bundle (and clock): does the installed bundle expire soon; is the clock after its creation (EBUN01/02, ECLK01)?"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from appliance.health.context import HealthContext, finding, section
from appliance.health.installer_files import latest_receipt, timestamp
from appliance.sdk.health import HealthFinding, HealthSection, Severity

WARN_WITHIN = timedelta(days=30)  # the installer's preflight warns at the same distance


async def check(ctx: HealthContext) -> HealthSection:
    return await asyncio.to_thread(_check, ctx)


def _check(ctx: HealthContext) -> HealthSection:
    receipt = latest_receipt(ctx.config)
    if receipt is None:
        return section(bundle="not installed from a bundle: there is no expiry to watch")
    expires_at, created_at = timestamp(receipt.get("expires_at")), timestamp(receipt.get("created_at"))
    details: dict[str, Any] = {"version": receipt.get("version"), "now": ctx.now.isoformat(),
                               "expires_at": expires_at.isoformat() if expires_at else None,
                               "created_at": created_at.isoformat() if created_at else None}
    findings: list[HealthFinding] = []
    if created_at is not None and ctx.now < created_at - timedelta(hours=1):
        findings.append(finding("ECLK01", Severity.ERROR, f"The clock says {ctx.now:%Y-%m-%d %H:%M} UTC, before the "
                                f"installed bundle was built ({created_at:%Y-%m-%d}): certificates and tokens "
                                "misbehave. Set the clock (timedatectl set-time ...) or configure NTP."))
    if expires_at is not None and expires_at <= ctx.now:
        findings.append(finding("EBUN02", Severity.ERROR, f"The installed bundle expired on {expires_at:%Y-%m-%d}: "
                                "the next upgrade needs a newer bundle. Ask the vendor for the current release."))
    elif expires_at is not None and expires_at - ctx.now <= WARN_WITHIN:
        findings.append(finding("EBUN01", Severity.WARNING, f"The installed bundle expires on {expires_at:%Y-%m-%d} "
                                f"({(expires_at - ctx.now).days} days). Plan the next upgrade before then."))
    return section(findings, **details)
