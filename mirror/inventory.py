"""Read a mirror tree back: what it holds (list), what changed (diff), whether it is intact (verify)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bundles.signatures import dearmor
from mirror.hashes import dirhash_h1, zip_hash
from mirror.layout import MIRROR, REGISTRY, SIGNING_KEY


@dataclass(frozen=True)
class Entry:
    source: str        # hostname/namespace/type; "(appliance)/namespace/type" for the registry part
    version: str
    platform: str
    hashes: tuple[str, ...]
    archive: Path


def _mirror_entries(tree: Path) -> list[Entry]:
    entries = []
    for index in sorted((tree / MIRROR).glob("*/*/*/index.json")):
        folder = index.parent
        source = folder.relative_to(tree / MIRROR).as_posix()
        for version in json.loads(index.read_text())["versions"]:
            document = json.loads((folder / f"{version}.json").read_text())
            for platform, archive in sorted(document["archives"].items()):
                entries.append(Entry(source, version, platform, tuple(archive.get("hashes", [])),
                                     folder / archive["url"]))
    return entries


def _registry_entries(tree: Path) -> list[Entry]:
    entries = []
    for listing in sorted((tree / REGISTRY / "v1/providers").glob("*/*/versions")):
        folder = listing.parent
        namespace, kind = folder.relative_to(tree / REGISTRY / "v1/providers").parts
        for item in json.loads(listing.read_text())["versions"]:
            for platform in item["platforms"]:
                download = folder / item["version"] / "download" / platform["os"] / platform["arch"]
                document = json.loads(download.read_text())
                entries.append(Entry(f"(appliance)/{namespace}/{kind}", item["version"],
                                     f"{platform['os']}_{platform['arch']}", (f"zh:{document['shasum']}",),
                                     download.parent.parent.parent / document["filename"]))
    return entries


def entries(tree: Path) -> list[Entry]:
    return _mirror_entries(tree) + _registry_entries(tree)


def verify_tree(tree: Path) -> list[str]:
    """Every problem found: archives missing or not matching their published hashes, bad signatures."""
    problems = []
    for entry in entries(tree):
        label = f"{entry.source} {entry.version} {entry.platform} ({entry.archive.name})"
        if not entry.archive.is_file():
            problems.append(f"{label}: the archive is missing")
            continue
        actual = {zip_hash(entry.archive)}
        if any(h.startswith("h1:") for h in entry.hashes):
            try:
                actual.add(dirhash_h1(entry.archive))
            except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
                problems.append(f"{label}: the archive is damaged ({err})")
        for expected in entry.hashes:
            if expected not in actual:
                problems.append(f"{label}: {expected.split(':')[0]} hash mismatch (published {expected})")
    problems += _verify_signatures(tree)
    return problems


def _verify_signatures(tree: Path) -> list[str]:
    sums = sorted((tree / REGISTRY / "v1/providers").glob("*/*/*/*_SHA256SUMS"))
    if not sums:
        return []
    key = tree / REGISTRY / SIGNING_KEY
    if not key.is_file():
        return [f"{key}: the signing key is missing, so no SHA256SUMS can be checked"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="mirror-gpgv-") as home:
        keyring = Path(home) / "key.gpg"
        keyring.write_bytes(dearmor(key.read_bytes()))
        for path in sums:
            result = subprocess.run(["gpgv", "--homedir", home, "--keyring", str(keyring), f"{path}.sig", str(path)],
                                    capture_output=True, text=True, check=False)
            if result.returncode != 0:
                problems.append(f"{path.relative_to(tree)}: the signature does not verify with {SIGNING_KEY}")
    return problems


@dataclass(frozen=True)
class Difference:
    change: str   # added, removed, changed
    source: str
    version: str
    platform: str


def diff_trees(old: Path, new: Path) -> list[Difference]:
    before = {(e.source, e.version, e.platform): e.hashes for e in entries(old)}
    after = {(e.source, e.version, e.platform): e.hashes for e in entries(new)}
    differences = []
    for key in sorted(set(before) | set(after)):
        if key not in before:
            differences.append(Difference("added", *key))
        elif key not in after:
            differences.append(Difference("removed", *key))
        elif set(before[key]) != set(after[key]):
            differences.append(Difference("changed", *key))
    return differences
