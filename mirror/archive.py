"""A provider package: where it came from, what it holds, and proof that it is what it says.

Checks: it is a readable zip; it holds exactly one `terraform-provider-<type>_v<version>`
executable (a `_x5`-style suffix allowed); its file name, its folder (host/namespace/type) and
its contents agree; the version is SemVer.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import semver

from mirror.errors import MirrorError
from mirror.hashes import dirhash_h1, zip_hash
from mirror.layout import archive_name

_ZIP_NAME = re.compile(
    r"^terraform-provider-(?P<type>[a-z0-9-]+)_(?P<version>[^_]+)_(?P<os>[a-z0-9]+)_(?P<arch>[a-z0-9]+)\.zip$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")


@dataclass(frozen=True)
class ProviderArchive:
    hostname: str
    namespace: str
    type: str
    version: str
    os: str
    arch: str
    path: Path
    h1: str
    zh: str

    @property
    def source(self) -> str:
        return f"{self.hostname}/{self.namespace}/{self.type}"

    @property
    def platform(self) -> str:
        return f"{self.os}_{self.arch}"

    @property
    def file_name(self) -> str:
        return archive_name(self.type, self.version, self.os, self.arch)


def _fail(path: Path, problem: str, hint: str = "") -> MirrorError:
    return MirrorError(f"{path}: {problem}.", hint or "Replace it with the provider's original release zip.")


def parse_archive(path: Path, hostname: str, namespace: str, provider_type: str) -> ProviderArchive:
    """Validate a provider zip found at <hostname>/<namespace>/<type>/<file>."""
    match = _ZIP_NAME.match(path.name)
    if match is None:
        raise _fail(path, "the name is not terraform-provider-<type>_<version>_<os>_<arch>.zip",
                    "Provider packages keep their release file names.")
    # An empty hostname means the appliance's own registry, whose host name is the site's.
    if not ((hostname == "" or _HOST.match(hostname)) and _NAME.match(namespace) and _NAME.match(provider_type)):
        raise _fail(path, f"{hostname}/{namespace}/{provider_type} is not a provider source address",
                    "Lay packages out as HOSTNAME/NAMESPACE/TYPE/<zip>, like 'terraform providers mirror' does.")
    if match["type"] != provider_type:
        raise _fail(path, f"the name says type {match['type']!r} but it sits in the folder for {provider_type!r}")
    try:
        semver.Version.parse(match["version"])
    except ValueError as err:
        raise _fail(path, f"version {match['version']!r} is not SemVer") from err
    executable = _single_executable(path, provider_type)
    expected = re.compile(rf"^terraform-provider-{re.escape(provider_type)}_v{re.escape(match['version'])}(_x\d+)?$")
    if not expected.match(executable.rsplit("/", 1)[-1]):
        raise _fail(path, f"it holds {executable}, which is not the executable for {provider_type} "
                    f"v{match['version']}")
    try:
        h1 = dirhash_h1(path)
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise _fail(path, f"its contents cannot be read ({err})") from err
    return ProviderArchive(hostname, namespace, provider_type, match["version"], match["os"], match["arch"], path,
                           h1, zip_hash(path))


def _single_executable(path: Path, provider_type: str) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise _fail(path, f"it is not a readable zip ({err})", "Copy it again; it may be truncated.") from err
    if broken is not None:
        raise _fail(path, f"entry {broken} is damaged", "Copy it again; it may be truncated.")
    candidates = [n for n in names if n.rsplit("/", 1)[-1].startswith("terraform-provider-") and not n.endswith("/")]
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise _fail(path, f"it must hold exactly one terraform-provider-{provider_type} executable, found {found}")
    return candidates[0]


def scan_packed_tree(root: Path) -> list[ProviderArchive]:
    """Provider zips laid out HOSTNAME/NAMESPACE/TYPE/*.zip (what `terraform providers mirror` writes)."""
    found = []
    for zip_path in sorted(root.rglob("*.zip")):
        parts = zip_path.relative_to(root).parts
        if len(parts) < 4:
            raise _fail(zip_path, "its source address cannot be told from where it is",
                        "Put it under HOSTNAME/NAMESPACE/TYPE/, e.g. registry.terraform.io/hashicorp/random/.")
        hostname, namespace, provider_type = parts[-4:-1]
        found.append(parse_archive(zip_path, hostname.lower(), namespace.lower(), provider_type.lower()))
    return found
