"""The appliance Terraform provider: templates read the workspace, its owner and parameters, and
declare agents, apps and metadata (Coder's provider surface, `appliance_*` names).

Terraform starts the provider as a plugin; the provisioner passes the build's facts to it as
APPLIANCE_* environment variables (env.py). It is packaged with PyInstaller (packaging.py, build
side only) so terraform needs no Python on the appliance.

Nothing here imports `tf` at package import, so the CLI can load `packaging` where the build
extra is not installed.
"""

from __future__ import annotations

# The source address templates use: a reserved TLD, portable between sites, unresolvable anywhere else.
HOSTNAME = "appliance.internal"
NAMESPACE = "appliance"
TYPE = "appliance"
SOURCE = f"{HOSTNAME}/{NAMESPACE}/{TYPE}"
