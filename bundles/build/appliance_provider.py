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


def package_appliance_provider(cache: Path, project: Path, version: str) -> tuple[Path, Path]:
    """Folders holding only the provider built from `project` at release `version`: for the mirror
    (HOSTNAME/NAMESPACE/TYPE/*.zip) and for the registry (NAMESPACE/TYPE/*.zip)."""
    out = cache / "provider-package"
    shutil.rmtree(out, ignore_errors=True)
    # Run from the project, so `-m appliance` is the source tree being released, not whatever is installed.
    result = subprocess.run([sys.executable, "-m", "appliance", "provider", "package", str(out.resolve()),
                             "--cache-dir", str(cache.resolve() / "provider")], cwd=project, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise BundleError(f"Packaging the appliance Terraform provider failed: {tail}",
                          "Install the build extra (pip install '.[build]'), then build again.")
    if not (out / HOSTNAME).is_dir():
        raise BundleError(f"`appliance provider package` wrote nothing under {out / HOSTNAME}.",
                          "Run it by hand to see why: appliance provider package /tmp/provider")
    built = sorted(p.name for p in (out / HOSTNAME).rglob("*.zip"))
    if not built or any(f"_{version}_" not in name for name in built):
        raise BundleError(f"The appliance provider was packaged as {', '.join(built) or 'nothing'}, "
                          f"not at the release version {version}.",
                          f"Run the build from {project} with the interpreter of its environment, so the "
                          "provider is built from the sources being released.")
    return out, out / HOSTNAME
