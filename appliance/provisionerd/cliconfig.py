"""The Terraform CLI configuration a daemon runs terraform with: the appliance's mirror and nothing else.

No plugin_cache_dir: a cache shared between jobs would be written by one template's terraform and
trusted by the next; each job installs its providers from the (read-only) mirror instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from mirror.cliconfig import terraform_cli_config
from mirror.layout import MIRROR


def _write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "terraform.rc"
    path.write_text(text)
    return path


def filesystem_mirror_config(root: Path, mirror_dir: Path) -> Path:
    """For daemons on the appliance host: read the mirror tree from disk (no TLS, no network)."""
    return _write(root, (
        "# Written by the appliance provisioner: providers come only from the appliance's mirror.\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path = {json.dumps(str(mirror_dir / MIRROR))}\n"
        "  }\n"
        "}\n"))


def network_mirror_config(root: Path, access_url: str) -> Path:
    """For daemons elsewhere: the appliance's network mirror and registry over HTTPS."""
    return _write(root, terraform_cli_config(access_url))
