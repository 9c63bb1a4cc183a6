"""The appliance's own Terraform provider for the bundle's mirror, packaged by `appliance provider package`.

Run as a command, not imported: bundles does not import the appliance package. The provider
zip is cached under CACHE/provider by a digest of its sources, so an unchanged provider costs
a copy, not a PyInstaller build.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bundles.errors import BundleError

HOSTNAME = "appliance.internal"  # the provider's source host


def package_appliance_provider(cache: Path) -> tuple[Path, Path]:
    """Folders holding only the current provider build: for the mirror (HOSTNAME/NAMESPACE/TYPE/*.zip)
    and for the registry (NAMESPACE/TYPE/*.zip)."""
    out = cache / "provider-package"
    shutil.rmtree(out, ignore_errors=True)
    result = subprocess.run([sys.executable, "-m", "appliance", "provider", "package", str(out), "--cache-dir",
                             str(cache / "provider")], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise BundleError(f"Packaging the appliance Terraform provider failed: {tail}",
                          "Install the build extra (pip install '.[build]'), then build again.")
    if not (out / HOSTNAME).is_dir():
        raise BundleError(f"`appliance provider package` wrote nothing under {out / HOSTNAME}.",
                          "Run it by hand to see why: appliance provider package /tmp/provider")
    return out, out / HOSTNAME
