"""`appliance-installer status`: version, services, certificates and the last verification."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from installer.health import unit_states
from installer.journal import load
from installer.paths import HostPaths


def certificate_report(paths: HostPaths) -> dict[str, Any] | None:
    appliance = paths.current / "venv/bin/appliance"
    if not appliance.exists():
        return None
    result = subprocess.run([str(appliance), "pki", "status", "--output", "json"], capture_output=True, text=True,
                            check=False, env={**os.environ, "APPLIANCE_CONFIG": str(paths.config)})
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        return None
    return report


def last_receipt(paths: HostPaths) -> dict[str, Any] | None:
    latest = paths.receipts / "latest.json"
    if not latest.exists():
        return None
    receipt: dict[str, Any] = json.loads(latest.read_text())
    return receipt


def last_journal(paths: HostPaths) -> dict[str, Any] | None:
    """The last upgrade or rollback: kind, versions, outcome and the step that failed, if any."""
    journal = load(paths)
    if journal is None:
        return None
    return {"kind": journal.kind, "from_version": journal.from_version, "to_version": journal.to_version,
            "outcome": journal.outcome, "failed_step": journal.failed_step, "started_at": journal.started_at,
            "finished_at": journal.finished_at, "backup": journal.data.get("backup")}


def status_report(paths: HostPaths) -> dict[str, Any]:
    version = paths.installed_version()
    return {
        "installed_version": version,
        "release_dir": str(Path(os.path.realpath(paths.current))) if version else None,
        "units": {s.unit: s.state for s in unit_states()} if version else {},
        "certificates": certificate_report(paths) if version else None,
        "last_verification": last_receipt(paths),
        "last_upgrade": last_journal(paths),
    }
