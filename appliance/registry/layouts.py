"""Image sources on disk, checked before a copy: an OCI layout directory or a docker-archive tar.

Cheap checks only (files present, JSON parses, sizes and small blobs' digests match), so a corrupt
source fails naming the file that is wrong; skopeo verifies every layer's digest during the copy.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import OperatorError

OCI_LAYOUT_FILE = "oci-layout"  # {"imageLayoutVersion": "1.0.0"}
OCI_INDEX_FILE = "index.json"   # the layout's entry point: manifests, each with an optional ref annotation
REF_ANNOTATION = "org.opencontainers.image.ref.name"
DOCKER_MANIFEST = "manifest.json"  # docker-archive: [{"Config": ..., "RepoTags": [...], "Layers": [...]}]
_SMALL_BLOB = 4 << 20  # blobs hashed here (manifests, configs); layers are left to skopeo
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
LAYOUT_HINT = "Copy or build the image again (appliance-bundle image build --output DIR), then retry."


@dataclass(frozen=True)
class ImageSource:
    transport: str        # what skopeo reads: oci:DIR[:REF] or docker-archive:FILE
    default_name: str | None  # REPO:TAG suggested by the source (its ref or RepoTags), if any
    total_bytes: int      # sum of blob sizes, for progress
    blobs: int


def _corrupt(path: Path, what: str) -> OperatorError:
    return OperatorError(f"Corrupt image at {path}: {what}.", LAYOUT_HINT)


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError as err:
        raise _corrupt(path, "the file is missing") from err
    except OSError as err:
        raise _corrupt(path, f"cannot read it ({err.strerror})") from err
    except ValueError as err:
        raise _corrupt(path, f"not valid JSON ({err})") from err


def _blob(layout: Path, descriptor: object, owner: Path) -> tuple[Path, int]:
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("size"), int):
        raise _corrupt(owner, "a descriptor without digest or size")
    found = _DIGEST.fullmatch(str(descriptor.get("digest", "")))
    if found is None:
        raise _corrupt(owner, f"unsupported digest {descriptor.get('digest')!r}")
    path = layout / "blobs" / "sha256" / found.group(1)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise _corrupt(path, f"blob missing (named in {owner.name})") from err
    if size != descriptor["size"]:
        raise _corrupt(path, f"blob is {size} bytes, {owner.name} says {descriptor['size']}")
    if size <= _SMALL_BLOB and hashlib.sha256(path.read_bytes()).hexdigest() != found.group(1):
        raise _corrupt(path, "blob content does not match its digest")
    return path, size


def _pick(index: list[object], ref: str | None, path: Path) -> dict[str, object]:
    entries = [m for m in index if isinstance(m, dict)]
    if ref is not None:
        entries = [m for m in entries if (m.get("annotations") or {}).get(REF_ANNOTATION) == ref]
        if not entries:
            raise OperatorError(f"No image with ref {ref!r} in {path}.", "List refs with: skopeo inspect oci:DIR.")
    if len(entries) != 1:
        raise OperatorError(f"{path} holds {len(entries)} images; say which with --ref.",
                            f"Refs are the {REF_ANNOTATION} annotations in index.json.")
    return entries[0]


def oci_source(layout: Path, ref: str | None) -> ImageSource:
    marker = _json(layout / OCI_LAYOUT_FILE)
    if not isinstance(marker, dict) or "imageLayoutVersion" not in marker:
        raise _corrupt(layout / OCI_LAYOUT_FILE, "no imageLayoutVersion")
    index = _json(layout / OCI_INDEX_FILE)
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise _corrupt(layout / OCI_INDEX_FILE, "no manifests list")
    chosen = _pick(index["manifests"], ref, layout / OCI_INDEX_FILE)
    manifest_path, total = _blob(layout, chosen, layout / OCI_INDEX_FILE)
    manifest = _json(manifest_path)
    descriptors: list[object] = []
    if isinstance(manifest, dict) and isinstance(manifest.get("layers"), list):
        descriptors = [manifest.get("config"), *manifest["layers"]]
    for descriptor in descriptors:
        total += _blob(layout, descriptor, manifest_path)[1]
    annotations = chosen.get("annotations")
    name = annotations.get(REF_ANNOTATION) if isinstance(annotations, dict) else None
    transport = f"oci:{layout}:{name}" if isinstance(name, str) else f"oci:{layout}"
    return ImageSource(transport, name if isinstance(name, str) else None, total, len(descriptors) + 1)


def docker_archive_source(archive: Path) -> ImageSource:
    try:
        with tarfile.open(archive) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            entry = members.get(DOCKER_MANIFEST)
            handle = tar.extractfile(entry) if entry is not None else None
            if handle is None:
                raise _corrupt(archive, f"no {DOCKER_MANIFEST} in the archive")
            manifest = json.loads(handle.read())
    except (tarfile.TarError, EOFError) as err:
        raise _corrupt(archive, f"not a readable tar ({err})") from err
    except ValueError as err:
        raise _corrupt(archive, f"{DOCKER_MANIFEST} is not valid JSON ({err})") from err
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        raise _corrupt(archive, f"{DOCKER_MANIFEST} must list exactly one image")
    image = manifest[0]
    files = [image.get("Config"), *(image.get("Layers") or [])]
    for name in files:
        if not isinstance(name, str) or name.removeprefix("./") not in members:
            raise _corrupt(archive, f"{name!r} named in {DOCKER_MANIFEST} is not in the archive")
    tags = image.get("RepoTags") or []
    default = str(tags[0]).rsplit("/", 1)[-1] if tags else None
    total = sum(members[str(n).removeprefix("./")].size for n in files)
    return ImageSource(f"docker-archive:{archive}", default, total, len(files))


def image_source(path: Path, ref: str | None = None) -> ImageSource:
    if path.is_dir():
        return oci_source(path, ref)
    if path.is_file():
        return docker_archive_source(path)
    raise OperatorError(f"No image at {path}.", "Give an OCI layout directory or a docker-archive .tar file.")
