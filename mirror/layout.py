"""The mirror's on-disk tree and URL paths, written down once.

    OUT/
      mirror/<hostname>/<namespace>/<type>/      Provider Network Mirror Protocol
          index.json                               {"versions": {"1.2.0": {}}}
          <version>.json                           {"archives": {"linux_amd64": {"url", "hashes"}}}
          terraform-provider-<type>_<version>_<os>_<arch>.zip
      registry/                                  Provider Registry Protocol (the appliance's own host)
          .well-known/terraform.json               {"providers.v1": "/v1/providers/"}
          v1/providers/<namespace>/<type>/versions
          v1/providers/<namespace>/<type>/<version>/download/<os>/<arch>
          v1/providers/<namespace>/<type>/<version>/terraform-provider-<type>_<version>_SHA256SUMS[.sig]
          v1/providers/<namespace>/<type>/<version>/terraform-provider-<type>_<version>_<os>_<arch>.zip
          signing-key.asc                          the mirror signing key's public part

Every URL inside the JSON documents is relative, so the tree works under any host name, served
by the control plane or by nginx as static files.
"""

from __future__ import annotations

MIRROR = "mirror"
REGISTRY = "registry"
MIRROR_URL_PATH = "/tf/mirror/"       # where the network mirror tree is served
PROVIDERS_URL_PATH = "/v1/providers/"  # registry protocol, providers.v1
DISCOVERY_PATH = ".well-known/terraform.json"
SIGNING_KEY = "signing-key.asc"
REGISTRY_PROTOCOLS = ("6.0",)         # what providers built with the tf framework speak
JSON_FILE_NAMES = ("versions", "index.json")


def archive_name(provider_type: str, version: str, os_name: str, arch: str) -> str:
    return f"terraform-provider-{provider_type}_{version}_{os_name}_{arch}.zip"


def shasums_name(provider_type: str, version: str) -> str:
    return f"terraform-provider-{provider_type}_{version}_SHA256SUMS"
