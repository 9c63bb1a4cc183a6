"""backups: how old is the newest good backup the installer's daily timer took (EBAK01, EBAK02)?"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from appliance.health.context import HealthContext, finding, section
from appliance.health.installer_files import backup_summary, is_installed, newest_backup, receipts_dir, timestamp
from appliance.sdk.health import HealthSection, Severity

MAX_AGE = timedelta(days=2)  # the timer runs daily: one missed run is tolerated


async def check(ctx: HealthContext) -> HealthSection:
    return await asyncio.to_thread(_check, ctx)


def _check(ctx: HealthContext) -> HealthSection:
    if not is_installed(ctx.config):
        return section(backups="not installed by appliance-installer: backing up is the operator's job "
                               "(pg_dump and the data folder)")
    summary = backup_summary(ctx.config)
    newest = newest_backup(summary)
    details: dict[str, Any] = {"max_age_hours": int(MAX_AGE.total_seconds() // 3600),
                               "count": len((summary or {}).get("backups") or []),
                               "newest": newest.isoformat() if newest else None}
    findings = []
    failure = (summary or {}).get("last_failure")
    failed_at = timestamp(failure.get("at")) if isinstance(failure, dict) else None
    if isinstance(failure, dict) and failed_at is not None:
        details["last_failure"] = {"at": failed_at.isoformat(), "error": str(failure.get("error"))}
        findings.append(finding("EBAK02", Severity.WARNING, f"The last backup, at {failed_at:%Y-%m-%d %H:%M} UTC, "
                                f"failed: {failure.get('error')}. Fix that, then run 'appliance-installer backup'."))
    if newest is not None and ctx.now - newest > MAX_AGE:
        findings.append(finding("EBAK01", Severity.WARNING, "The newest good backup is from "
                                f"{newest:%Y-%m-%d %H:%M} UTC, more than 2 days ago. Check appliance-backup.timer "
                                "and run 'appliance-installer backup'."))
    elif newest is None and ctx.now - _installed_at(ctx) > MAX_AGE:
        findings.append(finding("EBAK01", Severity.WARNING, "There is no good backup although the appliance was "
                                "installed more than 2 days ago. Check appliance-backup.timer and run "
                                "'appliance-installer backup'."))
    return section(findings, **details)


def _installed_at(ctx: HealthContext) -> datetime:
    """When the first receipt was written: the appliance's install."""
    stamps = [p.stat().st_mtime for p in receipts_dir(ctx.config).glob("*.json")]
    return datetime.fromtimestamp(min(stamps, default=ctx.now.timestamp()), tz=ctx.now.tzinfo)
