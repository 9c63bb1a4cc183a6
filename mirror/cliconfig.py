"""The Terraform CLI configuration the provisioner runs with: the appliance is the only source.

Providers whose source address is the appliance's own host come through the registry protocol
(direct, answered by the appliance); every other provider comes from the network mirror. There
is no other `direct` source, so nothing can fall back to the internet.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mirror.layout import MIRROR_URL_PATH


def registry_host(access_url: str) -> str:
    """The host part of provider source addresses that mean 'this appliance' (port included when not 443)."""
    parts = urlsplit(access_url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port and parts.port != 443 else host


def terraform_cli_config(access_url: str) -> str:
    host = registry_host(access_url)
    mirror_url = access_url.rstrip("/") + MIRROR_URL_PATH
    return (
        "# Written by the appliance. Providers come only from this appliance: its own registry for\n"
        f"# {host}/*/*, its network mirror for everything else. No other source is allowed.\n"
        "provider_installation {\n"
        "  network_mirror {\n"
        f'    url     = "{mirror_url}"\n'
        f'    exclude = ["{host}/*/*"]\n'
        "  }\n"
        "  direct {\n"
        f'    include = ["{host}/*/*"]\n'
        "  }\n"
        "}\n"
    )
