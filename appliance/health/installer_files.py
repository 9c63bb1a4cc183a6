"""What the installer leaves on an installed host, read as plain files: receipts, the journal, the backups' summary.

The appliance never imports the installer (an import contract says so): these are the files'
documented shapes (installer/install.py, installer/journal.py, installer/backup.py), read defensively.
None of them exists in embedded mode, where backups and bundles are the operator's own business.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.config import ServerConfig
from appliance.upgrades import read_installer_json

# installer/backup.py publish_summary: the backups folder is root's alone, this summary is world-readable.
BACKUP_SUMMARY = "backups.json"


def installer_state(config: ServerConfig) -> Path:
    return config.upgrade_journal.parent  # /var/lib/appliance/installer


def receipts_dir(config: ServerConfig) -> Path:
    return installer_state(config) / "receipts"


def backup_summary(config: ServerConfig) -> dict[str, Any] | None:
    """{"backups": [{name, created_at, size, version, reason}], "last_success_at", "last_failure": {at, error}}."""
    return read_installer_json(installer_state(config) / BACKUP_SUMMARY)


def latest_receipt(config: ServerConfig) -> dict[str, Any] | None:
    """The running release's receipt: version, created_at and expires_at of its bundle, signers."""
    return read_installer_json(_latest_receipt_file(config))


def timestamp(value: Any) -> datetime | None:
    """An ISO-8601 time the installer wrote ('Z' for UTC), or None when it is not one."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def newest_backup(summary: dict[str, Any] | None) -> datetime | None:
    """When the newest complete backup in the summary was taken."""
    backups = summary.get("backups") if summary else None
    if not isinstance(backups, list):
        return None
    stamps = [timestamp(b.get("created_at")) for b in backups if isinstance(b, dict)]
    return max((s for s in stamps if s is not None), default=None)


def is_installed(config: ServerConfig) -> bool:
    return _latest_receipt_file(config).is_file()


def _latest_receipt_file(config: ServerConfig) -> Path:
    return receipts_dir(config) / "latest.json"
