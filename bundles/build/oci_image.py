"""A rootfs -> a one-layer OCI image layout with reproducible digests (the OCI JSON shapes live here).

The layout written to DIR (OCI image-layout 1.0.0):

    oci-layout            {"imageLayoutVersion": "1.0.0"}
    index.json            one manifest descriptor, tagged by org.opencontainers.image.ref.name
    blobs/sha256/<hex>    the manifest, the config, and the gzip'd layer tar

The layer tar lists entries depth first in byte order of their names, every mtime is the image's
epoch, owners are numeric (no user or group names), and gzip carries no name and mtime 0, so the
same rootfs and epoch give the same layer digest, config digest and manifest digest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

LAYOUT_VERSION = "1.0.0"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
# Directories kept in the layer but always empty: the runtime mounts them, or they hold only
# what one boot or one build left behind.
EMPTIED = frozenset({"dev", "proc", "sys", "run", "tmp", "var/tmp"})
GZIP_LEVEL = 6   # zlib's default: about as small as 9 on a rootfs, twice as fast
CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageConfig:
    """What `podman run` uses when the caller gives nothing else (the OCI config's `config`)."""

    user: str
    env: tuple[str, ...]
    cmd: tuple[str, ...]
    working_dir: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str   # sha256:<hex>
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _Hashing:
    """A write-only file that hashes and counts what passes through to `inner` (None: discard)."""

    def __init__(self, inner: _Sink | None) -> None:
        self.inner, self.sha, self.size = inner, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.inner is not None:
            self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        if self.inner is not None:
            self.inner.flush()


def _entries(root: Path, relative: str = "") -> Iterator[str]:
    """Every path under root, relative, parents before children, siblings in byte order of their names."""
    directory = root / relative if relative else root
    for child in sorted(directory.iterdir(), key=lambda p: os.fsencode(p.name)):
        path = f"{relative}/{child.name}" if relative else child.name
        yield path
        if stat.S_ISDIR(child.lstat().st_mode) and path not in EMPTIED:
            yield from _entries(root, path)


def _normalised(info: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    info.mtime = epoch
    info.uname = info.gname = ""
    info.pax_headers = {}
    return info


def write_layer(rootfs: Path, out: IO[bytes], epoch: int) -> tuple[Descriptor, str]:
    """Write rootfs as a gzip'd tar to out; return its descriptor and the uncompressed tar's digest."""
    compressed = _Hashing(out)
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0,
                       compresslevel=GZIP_LEVEL) as zipped:
        plain = _Hashing(zipped)
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for name in _entries(rootfs):
                path = rootfs / name
                found = tar.gettarinfo(str(path), arcname=name)
                if found is None:  # a socket: nothing a container could use
                    continue
                info = _normalised(found, epoch)
                if info.isreg():
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    return Descriptor(MEDIA_LAYER_GZIP, f"sha256:{compressed.sha.hexdigest()}", compressed.size), \
        f"sha256:{plain.sha.hexdigest()}"


def config_json(config: ImageConfig, *, architecture: str, created: datetime, diff_ids: list[str],
                created_by: str) -> dict[str, Any]:
    stamp = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "created": stamp,
        "architecture": architecture,
        "os": "linux",
        "config": {"User": config.user, "Env": list(config.env), "Cmd": list(config.cmd),
                   "WorkingDir": config.working_dir, "Labels": dict(sorted(config.labels.items()))},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": stamp, "created_by": created_by}],
    }


def manifest_json(config: Descriptor, layers: list[Descriptor], created: datetime) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
            "annotations": {CREATED: created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}


def index_json(manifest: Descriptor, tag: str) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MEDIA_INDEX,
            "manifests": [{**manifest.to_json(), "annotations": {REF_NAME: tag}}]}


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _put_blob(blobs: Path, media_type: str, data: bytes) -> Descriptor:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return Descriptor(media_type, f"sha256:{digest}", len(data))


def write_layout(rootfs: Path, output: Path, *, config: ImageConfig, architecture: str, created: datetime,
                 tag: str, created_by: str) -> Descriptor:
    """Write rootfs as a one-layer OCI image layout in output; return the manifest's descriptor."""
    blobs = output / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / "layer.partial"
    with partial.open("wb") as handle:
        layer, diff_id = write_layer(rootfs, handle, int(created.timestamp()))
    partial.replace(blobs / layer.digest.removeprefix("sha256:"))
    config_blob = _put_blob(blobs, MEDIA_CONFIG, _canonical(config_json(
        config, architecture=architecture, created=created, diff_ids=[diff_id], created_by=created_by)))
    manifest = _put_blob(blobs, MEDIA_MANIFEST, _canonical(manifest_json(config_blob, [layer], created)))
    (output / "oci-layout").write_bytes(_canonical({"imageLayoutVersion": LAYOUT_VERSION}))
    (output / "index.json").write_bytes(_canonical(index_json(manifest, tag)))
    return manifest
