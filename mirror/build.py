"""Build (or add to) a mirror tree. The new tree is made beside the old one and swapped in, so a
failed build leaves the previous tree exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mirror.archive import ProviderArchive, parse_archive, scan_packed_tree
from mirror.documents import mirror_documents, registry_documents, shasums
from mirror.errors import MirrorError
from mirror.layout import MIRROR, REGISTRY, SIGNING_KEY, shasums_name
from mirror.signing import SigningKey


@dataclass(frozen=True)
class BuildResult:
    mirrored: list[ProviderArchive]
    registered: list[ProviderArchive]
    added: int


def scan_registry_tree(root: Path) -> list[ProviderArchive]:
    """The appliance's own providers: NAMESPACE/TYPE/*.zip, published under the appliance's host."""
    found = []
    for zip_path in sorted(root.rglob("*.zip")):
        parts = zip_path.relative_to(root).parts
        if len(parts) < 3:
            raise MirrorError(f"{zip_path}: its namespace and type cannot be told from where it is.",
                              "Put it under NAMESPACE/TYPE/, e.g. appliance/appliance/.")
        namespace, kind = parts[-3:-1]
        found.append(parse_archive(zip_path, "", namespace.lower(), kind.lower()))
    return found


def existing_archives(out: Path) -> tuple[list[ProviderArchive], list[ProviderArchive]]:
    mirrored = scan_packed_tree(out / MIRROR) if (out / MIRROR).is_dir() else []
    registry = out / REGISTRY / "v1/providers"
    registered = []
    if registry.is_dir():
        for zip_path in sorted(registry.rglob("*.zip")):
            namespace, kind = zip_path.relative_to(registry).parts[:2]
            registered.append(parse_archive(zip_path, "", namespace, kind))
    return mirrored, registered


def _merge(old: list[ProviderArchive], new: list[ProviderArchive]) -> tuple[list[ProviderArchive], int]:
    merged = {(a.source, a.version, a.platform): a for a in old}
    added = 0
    for archive in new:
        key = (archive.source, archive.version, archive.platform)
        if key in merged and merged[key].h1 != archive.h1:
            raise MirrorError(f"{archive.path}: {archive.source} {archive.version} {archive.platform} is already in "
                              f"the mirror with different contents ({merged[key].h1} there, {archive.h1} here).",
                              "Released provider versions never change; check where this file came from.")
        added += key not in merged
        merged[key] = merged.get(key, archive)
    return sorted(merged.values(), key=lambda a: (a.source, a.version, a.platform)), added


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _place(archive: ProviderArchive, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(archive.path, target)  # same file system: no copy needed, content is immutable
    except OSError:
        shutil.copyfile(archive.path, target)


def _stage(work: Path, mirrored: list[ProviderArchive], registered: list[ProviderArchive], key: SigningKey | None,
           old_out: Path) -> None:
    for relative, data in mirror_documents(mirrored).items():
        _write(work / MIRROR / relative, data)
    for archive in mirrored:
        _place(archive, work / MIRROR / archive.hostname / archive.namespace / archive.type / archive.file_name)
    if not registered:
        return
    key_id, armor = (key.key_id, key.public_armor()) if key else _published_key(old_out)
    for relative, data in registry_documents(registered, key_id, armor).items():
        _write(work / REGISTRY / relative, data)
    for archive in registered:
        version_dir = work / REGISTRY / "v1/providers" / archive.namespace / archive.type / archive.version
        _place(archive, version_dir / archive.file_name)
    _sign_sums(work, old_out, registered, key)
    _write(work / REGISTRY / SIGNING_KEY, armor.encode())


def _published_key(old_out: Path) -> tuple[str, str]:
    """The key an existing tree was signed with, so adding only mirror providers needs no key."""
    armor = old_out / REGISTRY / SIGNING_KEY
    download = next((old_out / REGISTRY / "v1/providers").glob("*/*/*/download/*/*"), None)
    if not armor.is_file() or download is None:
        raise _needs_key()
    key_id = json.loads(download.read_text())["signing_keys"]["gpg_public_keys"][0]["key_id"]
    return str(key_id), armor.read_text()


def _needs_key() -> MirrorError:
    return MirrorError("New providers for the appliance's own registry must be signed with the mirror key.",
                       "Pass --signing-home DIR (the key is made there on first use).")


def _sign_sums(work: Path, old_out: Path, registered: list[ProviderArchive], key: SigningKey | None) -> None:
    versions = {(a.namespace, a.type, a.version) for a in registered}
    for namespace, kind, version in sorted(versions):
        relative = f"v1/providers/{namespace}/{kind}/{version}/{shasums_name(kind, version)}"
        sums = shasums(a for a in registered if (a.namespace, a.type, a.version) == (namespace, kind, version))
        old_sums, old_sig = old_out / REGISTRY / relative, old_out / REGISTRY / f"{relative}.sig"
        # An unchanged SHA256SUMS keeps its signature, so rebuilding does not churn the tree.
        if old_sums.exists() and old_sig.exists() and old_sums.read_bytes() == sums:
            signature = old_sig.read_bytes()
        elif key is None:
            raise _needs_key()
        else:
            signature = key.sign(sums)
        _write(work / REGISTRY / f"{relative}.sig", signature)


def build_mirror(out: Path, sources: list[Path], registry_sources: list[Path], key: SigningKey | None) -> BuildResult:
    """Add the providers under `sources` (and `registry_sources`) to the tree at `out`."""
    new_mirrored = [a for source in sources for a in scan_packed_tree(_folder(source))]
    new_registered = [a for source in registry_sources for a in scan_registry_tree(_folder(source))]
    old_mirrored, old_registered = existing_archives(out)
    mirrored, added_m = _merge(old_mirrored, new_mirrored)
    registered, added_r = _merge(old_registered, new_registered)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        _stage(work, mirrored, registered, key, out)
        work.chmod(0o755)
        _swap(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BuildResult(mirrored, registered, added_m + added_r)


def _folder(path: Path) -> Path:
    if not path.is_dir():
        raise MirrorError(f"{path} is not a folder of provider packages.", "Pass the folder with --from.")
    return path


def _swap(new: Path, out: Path) -> None:
    if not out.exists():
        new.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)
