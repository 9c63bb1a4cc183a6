"""disk: free space where the appliance keeps its data and where releases are unpacked (EDISK01, EDISK02)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from appliance.health.context import HealthContext, finding, section
from appliance.sdk.health import HealthFinding, HealthSection, Severity

GIB = 1 << 30
WARN_BELOW = 2 * GIB  # an upgrade unpacks a release and takes a backup: a few GiB
ERROR_BELOW = GIB // 2  # PostgreSQL and the registry start failing writes soon


async def check(ctx: HealthContext) -> HealthSection:
    places = {"data": ctx.config.data_dir,
              "release": ctx.config.release_dir or Path(sys.prefix)}  # installed: /opt/appliance/releases/...
    details: dict[str, object] = {"warn_below_bytes": WARN_BELOW, "error_below_bytes": ERROR_BELOW}
    findings: list[HealthFinding] = []
    for name, path in places.items():
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        usage = shutil.disk_usage(existing)
        details[name] = {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total}
        if usage.free < ERROR_BELOW:
            findings.append(finding("EDISK02", Severity.ERROR, f"Only {usage.free / GIB:.2f} GiB free under {path}: "
                                    "writes, upgrades and backups will fail. Free space now (old backups under "
                                    "/var/lib/appliance/backups, unused images: appliance images gc)."))
        elif usage.free < WARN_BELOW:
            findings.append(finding("EDISK01", Severity.WARNING, f"Only {usage.free / GIB:.2f} GiB free under {path}. "
                                    "Free space or grow the filesystem before the next upgrade."))
    return section(findings, **details)
