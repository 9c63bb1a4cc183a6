"""A CycloneDX 1.5 JSON SBOM of what the stage holds: wheels, debs, binaries (the agent's too), providers, images.

Deterministic: the serial number is derived from the contents and the timestamp from the build
time, so the same inputs give the same SBOM.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bundles.errors import BundleError
from bundles.layout import NPM_PACKAGES, SBOM, SBOM_KIND_PROPERTY, SBOM_PATH_PROPERTY

_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
_PROVIDER_ZIP = re.compile(
    r"^terraform-provider-(?P<type>[^_]+)_(?P<version>[^_]+)_(?P<os>[^_]+)_(?P<arch>[^_.]+)\.zip$")


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _component(kind: str, name: str, version: str, purl: str | None, path: Path, stage: Path,
               component_type: str = "library") -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": component_type,
        "bom-ref": purl or f"{kind}:{name}@{version}",
        "name": name,
        "version": version,
        "hashes": [{"alg": "SHA-256", "content": _sha256(path)}],
        "properties": [{"name": SBOM_KIND_PROPERTY, "value": kind},
                       {"name": SBOM_PATH_PROPERTY, "value": path.relative_to(stage).as_posix()}],
    }
    if purl:
        entry["purl"] = purl
    return entry


def _deb_fields(path: Path) -> tuple[str, str, str]:
    result = subprocess.run(["dpkg-deb", "--field", str(path), "Package", "Version", "Architecture"],
                            capture_output=True, text=True, check=False)
    fields = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    if result.returncode != 0 or {"Package", "Version", "Architecture"} - set(fields):
        raise BundleError(f"{path.name} is not a readable Debian package.", "Remove it from the stage and rebuild.")
    return fields["Package"], fields["Version"], fields["Architecture"]


def components(stage: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for wheel in sorted((stage / "wheels").glob("*.whl")):
        match = _WHEEL.match(wheel.name)
        if match:
            name = match["name"].lower().replace("_", "-")
            found.append(_component("wheel", name, match["version"], f"pkg:pypi/{name}@{match['version']}",
                                    wheel, stage))
    for deb in sorted((stage / "debs").glob("*.deb")):
        package, version, arch = _deb_fields(deb)
        found.append(_component("deb", package, version, f"pkg:deb/debian/{package}@{version}?arch={arch}",
                                deb, stage))
    binaries = [*(stage / "installer").glob("*"), *(stage / "terraform").glob("*"), *(stage / "agent").glob("*")]
    for binary in sorted(binaries):
        if binary.is_file():
            found.append(_component("binary", binary.name, _binary_version(stage, binary), None, binary, stage,
                                    "application"))
    for archive in sorted((stage / "providers").rglob("*.zip")):
        match = _PROVIDER_ZIP.match(archive.name)
        if match:
            source = _provider_source(archive.relative_to(stage / "providers").parts)
            found.append(_component("provider", source, match["version"], f"pkg:terraform/{source}@{match['version']}",
                                    archive, stage))
    for index in sorted((stage / "images").glob("*/index.json")):
        found.append(_component("image", index.parent.name, "oci-layout", None, index, stage, "container"))
    return found + _npm_components(stage)


def _npm_components(stage: Path) -> list[dict[str, Any]]:
    """The npm packages vendored into the appliance wheel's static files; the hash is the npm tarball's."""
    recorded = stage / NPM_PACKAGES
    packages = json.loads(recorded.read_text()) if recorded.is_file() else []
    wheel = next((w.relative_to(stage).as_posix() for w in sorted((stage / "wheels").glob("appliance-*.whl"))), "")
    found = []
    for package in packages:
        purl = f"pkg:npm/{package['name'].replace('@', '%40')}@{package['version']}"
        found.append({"type": "library", "bom-ref": purl, "name": package["name"], "version": package["version"],
                      "purl": purl, "hashes": [{"alg": "SHA-256", "content": package["sha256"]}],
                      "properties": [{"name": SBOM_KIND_PROPERTY, "value": "npm"},
                                     {"name": SBOM_PATH_PROPERTY, "value": wheel}]})
    return found


def _provider_source(parts: tuple[str, ...]) -> str:
    """Source address from a mirror tree path; the appliance's registry has no fixed host name."""
    if parts[0] == "mirror":
        return "/".join(parts[1:4])
    if parts[0] == "registry":  # registry/v1/providers/<namespace>/<type>/<version>/<zip>
        return "appliance/" + "/".join(parts[3:5])
    return "/".join(parts[:3])


def _binary_version(stage: Path, binary: Path) -> str:
    versions = json.loads((stage / ".versions.json").read_text()) if (stage / ".versions.json").exists() else {}
    return str(versions.get(binary.relative_to(stage).as_posix(), "unknown"))


def write_sbom(stage: Path, *, product: str, version: str, created: datetime, tool_version: str) -> Path:
    found = components(stage)
    seed = json.dumps([[c["name"], c["version"], c["hashes"][0]["content"]] for c in found])
    document = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{product}/{version}/{seed}')}",
        "version": 1,
        "metadata": {
            "timestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "appliance-bundle", "version": tool_version}]},
            "component": {"type": "application", "bom-ref": f"{product}@{version}", "name": product,
                          "version": version},
        },
        "components": found,
    }
    path = stage / SBOM
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path

