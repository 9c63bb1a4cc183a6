"""What the installer leaves on an installed host, read as plain files: receipts, the journal, backups.

The appliance never imports the installer (an import contract says so): these are the files'
documented shapes (installer/install.py, installer/journal.py, installer/backup.py), read defensively.
None of them exists in embedded mode, where backups and bundles are the operator's own business.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.config import ServerConfig

BACKUP_MANIFEST = "manifest.json"


def installer_state(config: ServerConfig) -> Path:
    return config.upgrade_journal.parent  # /var/lib/appliance/installer


def receipts_dir(config: ServerConfig) -> Path:
    return installer_state(config) / "receipts"


def backups_dir(config: ServerConfig) -> Path:
    return config.data_dir / "backups"


def is_installed(config: ServerConfig) -> bool:
    return (receipts_dir(config) / "latest.json").is_file()


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
