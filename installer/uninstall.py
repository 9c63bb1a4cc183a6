"""`appliance-installer uninstall`: stop and remove the appliance; data stays unless --purge."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from installer.paths import UNITS, HostPaths

OUR_UNIT_FILES = ("appliance-backup.service", "appliance-backup.timer", "appliance-console.service",
                  "appliance-gateway.service", "appliance-pki-renew.service",
                  "appliance-pki-renew.timer", "appliance-provisioner.service", "appliance-registry.service",
                  "appliance-relay.service", "appliance-runtime.service")
OUR_FILES = ("etc/nginx/sites-enabled/appliance.conf", "etc/nginx/sites-available/appliance.conf",
             "etc/nginx/conf.d/appliance-gateway.conf", "etc/nginx/conf.d/appliance-relay.conf",
             "etc/postgresql/15/main/conf.d/appliance.conf")


def _systemctl(*args: str) -> None:
    subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


def uninstall(paths: HostPaths, *, purge: bool) -> list[str]:
    """Returns what was done, as lines for the operator."""
    done = []
    for unit in reversed(UNITS):
        _systemctl("disable", "--now", unit)
        done.append(f"stopped and disabled {unit}")
    for name in OUR_UNIT_FILES:
        (paths.root / "etc/systemd/system" / name).unlink(missing_ok=True)
    for relative in OUR_FILES:
        (paths.root / relative).unlink(missing_ok=True)
    _systemctl("daemon-reload")
    shutil.rmtree(paths.opt, ignore_errors=True)
    done.append(f"removed {paths.opt}, the appliance's units, nginx site and apt source")
    kept: list[Path] = [paths.state, paths.etc, paths.root / "var/lib/postgresql"]
    if purge:
        subprocess.run(["pg_dropcluster", "--stop", "15", "main"], capture_output=True, check=False)
        for folder in (*kept, paths.logs):
            shutil.rmtree(folder, ignore_errors=True)
        done.append("purged " + ", ".join(str(p) for p in (*kept, paths.logs)))
    else:
        done.append("kept " + ", ".join(str(p) for p in kept) + " (reinstalling reuses them; --purge deletes them)")
    return done
