"""backups: how old is the newest good backup the installer's daily timer took (EBAK01, EBAK02)?"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.health.context import HealthContext, finding, section
from appliance.health.installer_files import BACKUP_MANIFEST, backups_dir, is_installed, read_json, receipts_dir
from appliance.sdk.health import HealthSection, Severity

MAX_AGE = timedelta(days=2)  # the timer runs daily: one missed run is tolerated


async def check(ctx: HealthContext) -> HealthSection:
    return await asyncio.to_thread(_check, ctx)


def _check(ctx: HealthContext) -> HealthSection:
    if not is_installed(ctx.config):
        return section(backups="not installed by appliance-installer: backing up is the operator's job "
                               "(pg_dump and the data folder)")
    folder = backups_dir(ctx.config)
    good, bad = _scan(folder)
    details: dict[str, Any] = {"folder": str(folder), "max_age_hours": int(MAX_AGE.total_seconds() // 3600),
                               "count": len(good)}
    findings = []
    newest = max(good, default=None, key=lambda item: item[0])
    if newest is not None:
        details["newest"] = {"name": newest[1].name, "created_at": newest[0].isoformat()}
    if bad and (newest is None or bad[-1].stat().st_mtime > newest[0].timestamp()):
        findings.append(finding("EBAK02", Severity.WARNING, f"The newest backup folder {bad[-1].name} has no readable "
                                f"{BACKUP_MANIFEST}: it is incomplete. Run 'appliance-installer backup' and read "
                                "its output."))
    if newest is not None and ctx.now - newest[0] > MAX_AGE:
        findings.append(finding("EBAK01", Severity.WARNING, "The newest good backup is from "
                                f"{newest[0]:%Y-%m-%d %H:%M} UTC, more than 2 days ago. Check appliance-backup.timer "
                                "and run 'appliance-installer backup'."))
    elif newest is None and ctx.now - _installed_at(ctx) > MAX_AGE:
        findings.append(finding("EBAK01", Severity.WARNING, "There is no good backup although the appliance was "
                                "installed more than 2 days ago. Check appliance-backup.timer and run "
                                "'appliance-installer backup'."))
    return section(findings, **details)


def _scan(folder: Path) -> tuple[list[tuple[datetime, Path]], list[Path]]:
    """(created_at, folder) of every backup with a readable manifest; folders without one, oldest first."""
    good, bad = [], []
    if folder.is_dir():
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if path.name.startswith(".") or not path.is_dir():
                continue  # a backup being written has a dot name
            created = _created_at(read_json(path / BACKUP_MANIFEST))
            if created is None:
                bad.append(path)
            else:
                good.append((created, path))
    return good, bad


def _created_at(manifest: dict[str, Any] | None) -> datetime | None:
    if manifest is None:
        return None
    try:
        if not any(f.get("kind") == "database" for f in manifest["files"]):
            return None  # no database dump: nothing to restore from
        return datetime.fromisoformat(str(manifest["created_at"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _installed_at(ctx: HealthContext) -> datetime:
    """When the first receipt was written: the appliance's install."""
    stamps = [p.stat().st_mtime for p in receipts_dir(ctx.config).glob("*.json")]
    return datetime.fromtimestamp(min(stamps, default=ctx.now.timestamp()), tz=ctx.now.tzinfo)
