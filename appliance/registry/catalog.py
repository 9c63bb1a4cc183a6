"""What the registry holds: repositories, tags, manifest digests and sizes, read over its HTTP API.

The caller signs its own tokens (catalog, then pull per repository) with the CA's registry-token key:
the control plane and the host's CLI both hold it, so listing needs no user's credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from appliance.errors import OperatorError, RequestError
from appliance.pki.ca import CertificateAuthority
from appliance.registry.scopes import PULL, REPOSITORY, Access
from appliance.registry.tokens import load_signer, sign_token

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
])
CATALOG = Access("registry", "catalog", ("*",))
PAGE = 100
_TIMEOUT = 10.0
UNREACHABLE_HINT = ("The embedded registry starts with 'appliance server' (see its banner); an installed one is "
                    "'systemctl status appliance-registry'.")


@dataclass(frozen=True)
class TagInfo:
    repository: str
    tag: str
    digest: str
    media_type: str
    size: int  # the manifest, its config and its layers (or, for an index, the manifests it lists)


class RegistryUnreachable(OperatorError):
    """The registry did not answer, or answered something other than its API."""


def _size(body: bytes) -> tuple[str, int]:
    document = json.loads(body)
    parts = [document.get("config") or {}, *(document.get("layers") or document.get("manifests") or [])]
    return str(document.get("mediaType", "")), len(body) + sum(int(p.get("size", 0)) for p in parts)


@dataclass
class Catalog:
    base_url: str  # https://host:port
    ca: CertificateAuthority  # its registry-token key signs; its root is the only thing trusted for TLS
    subject: str   # `sub` of the tokens, for the registry's log

    def _token(self, access: list[Access]) -> str:
        try:
            signer = load_signer(self.ca)
        except RequestError as err:
            raise RegistryUnreachable(err.message, err.detail) from err
        return sign_token(signer, self.subject, access, datetime.now(UTC)).token

    def _get(self, path: str, access: list[Access], **headers: str) -> requests.Response:
        token = self._token(access)
        try:
            response = requests.get(self.base_url + path, timeout=_TIMEOUT, verify=str(self.ca.layout.root_cert),
                                    headers={"Authorization": f"Bearer {token}", **headers})
        except requests.RequestException as err:
            raise RegistryUnreachable(f"The registry at {self.base_url} did not answer: {err}.",
                                      UNREACHABLE_HINT) from err
        if response.status_code != 200:
            raise RegistryUnreachable(f"The registry at {self.base_url} answered {response.status_code} to {path}.",
                                      UNREACHABLE_HINT)
        return response

    def repositories(self) -> list[str]:
        names: list[str] = []
        last = ""
        while True:
            page = self._get(f"/v2/_catalog?n={PAGE}&last={last}", [CATALOG]).json().get("repositories") or []
            names.extend(page)
            if len(page) < PAGE:
                return names
            last = page[-1]

    def tags(self, repository: str) -> list[TagInfo]:
        access = [Access(REPOSITORY, repository, (PULL,))]
        found = []
        for tag in sorted(self._get(f"/v2/{repository}/tags/list", access).json().get("tags") or []):
            manifest = self._get(f"/v2/{repository}/manifests/{tag}", access, Accept=MANIFEST_TYPES)
            media_type, size = _size(manifest.content)
            found.append(TagInfo(repository, tag, manifest.headers.get("Docker-Content-Digest", ""),
                                 media_type or manifest.headers.get("Content-Type", ""), size))
        return found

    def everything(self) -> list[TagInfo]:
        return [info for repository in sorted(self.repositories()) for info in self.tags(repository)]
