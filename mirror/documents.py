"""The JSON documents of both protocols, as pure functions from archives to {relative path: bytes}."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import semver

from mirror.archive import ProviderArchive
from mirror.layout import DISCOVERY_PATH, PROVIDERS_URL_PATH, REGISTRY_PROTOCOLS, shasums_name


def _json(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _by_version(archives: Iterable[ProviderArchive]) -> dict[tuple[str, str, str], dict[str, list[ProviderArchive]]]:
    grouped: dict[tuple[str, str, str], dict[str, list[ProviderArchive]]] = defaultdict(lambda: defaultdict(list))
    for archive in archives:
        grouped[(archive.hostname, archive.namespace, archive.type)][archive.version].append(archive)
    return grouped


def _sorted_versions(versions: Iterable[str]) -> list[str]:
    return sorted(versions, key=semver.Version.parse)


def mirror_documents(archives: Iterable[ProviderArchive]) -> dict[str, bytes]:
    """index.json and <version>.json for every provider, paths relative to the mirror/ folder."""
    documents: dict[str, bytes] = {}
    for (host, namespace, kind), versions in _by_version(archives).items():
        folder = f"{host}/{namespace}/{kind}"
        documents[f"{folder}/index.json"] = _json({"versions": {v: {} for v in _sorted_versions(versions)}})
        for version, platforms in versions.items():
            entries = {a.platform: {"url": a.file_name, "hashes": [a.h1, a.zh]} for a in platforms}
            documents[f"{folder}/{version}.json"] = _json({"archives": entries})
    return documents


def shasums(archives: Iterable[ProviderArchive]) -> bytes:
    """SHA256SUMS lines (sha256sum format) for one provider version's archives."""
    return "".join(f"{a.zh.removeprefix('zh:')}  {a.file_name}\n" for a in sorted(archives, key=lambda a: a.file_name)
                   ).encode()


def registry_documents(archives: Iterable[ProviderArchive], key_id: str, public_key: str) -> dict[str, bytes]:
    """Discovery, versions and download documents, and SHA256SUMS, relative to the registry/ folder."""
    documents: dict[str, bytes] = {DISCOVERY_PATH: _json({"providers.v1": PROVIDERS_URL_PATH})}
    signing = {"gpg_public_keys": [{"key_id": key_id, "ascii_armor": public_key}]}
    for (_, namespace, kind), versions in _by_version(archives).items():
        base = f"v1/providers/{namespace}/{kind}"
        listing = [{"version": v, "protocols": list(REGISTRY_PROTOCOLS),
                    "platforms": [{"os": a.os, "arch": a.arch} for a in sorted(versions[v], key=lambda a: a.platform)]}
                   for v in _sorted_versions(versions)]
        documents[f"{base}/versions"] = _json({"versions": listing})
        for version, platforms in versions.items():
            sums = shasums_name(kind, version)
            documents[f"{base}/{version}/{sums}"] = shasums(platforms)
            for archive in platforms:
                # Relative to .../<version>/download/<os>/<arch>: two levels up is .../<version>/.
                documents[f"{base}/{version}/download/{archive.os}/{archive.arch}"] = _json({
                    "protocols": list(REGISTRY_PROTOCOLS), "os": archive.os, "arch": archive.arch,
                    "filename": archive.file_name, "download_url": f"../../{archive.file_name}",
                    "shasums_url": f"../../{sums}", "shasums_signature_url": f"../../{sums}.sig",
                    "shasum": archive.zh.removeprefix("zh:"), "signing_keys": signing})
    return documents


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
