"""The backup role's systemd units as rendered load cleanly: every hardening directive is one systemd knows."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.installed import ROLES, render

TEMPLATES = ROLES / "backup" / "templates"


def test_the_backup_units_verify_and_the_service_runs_the_installer_hardened(tmp_path: Path) -> None:
    for name in ("appliance-backup.service", "appliance-backup.timer"):
        (tmp_path / name).write_text(render(TEMPLATES / f"{name}.j2", backup_installer="/bin/true", backup_keep=7,
                                            backup_dir="/var/lib/appliance/backups"))
    verified = subprocess.run(["systemd-analyze", "verify", "appliance-backup.service", "appliance-backup.timer"],
                              cwd=tmp_path, capture_output=True, text=True, check=False)
    complaints = [line for line in verified.stderr.splitlines() if "appliance-backup" in line]
    assert verified.returncode == 0 and complaints == [], verified.stderr
    service = (tmp_path / "appliance-backup.service").read_text()
    assert "ExecStart=/bin/true backup --keep 7 --reason scheduled" in service
    assert {"ProtectSystem=strict", "ReadWritePaths=/var/lib/appliance/backups", "PrivateNetwork=yes",
            "CapabilityBoundingSet=CAP_DAC_READ_SEARCH", "NoNewPrivileges=yes"} <= set(service.splitlines())
    timer = (tmp_path / "appliance-backup.timer").read_text().splitlines()
    assert {"OnCalendar=daily", "Persistent=true"} <= set(timer)
