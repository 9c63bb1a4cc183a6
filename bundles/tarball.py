"""Deterministic tar writing: normalised headers, the manifest and signatures first."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bundles.errors import BundleError
from bundles.layout import FILE_MODE, MANIFEST, MAX_MANIFEST_BYTES, MAX_SIGNATURES_BYTES, SIGNATURES
from bundles.manifest import Manifest

Progress = Callable[[int], None]


def _header(name: str, size: int, mtime: int, mode: int = FILE_MODE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class _Counting(io.RawIOBase):
    """Reports bytes as tarfile copies them, for progress bars."""

    def __init__(self, inner: BinaryIO, progress: Progress | None) -> None:
        self.inner, self.progress = inner, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        if self.progress and data:
            self.progress(len(data))
        return len(data)


def write_bundle(out: Path, manifest: Manifest, stage: Path, *, mtime: int, signatures: bytes | None = None,
                 progress: Progress | None = None) -> None:
    """Write the bundle atomically: manifest.json, manifest.json.sig (if any), then every member."""
    manifest_bytes = manifest.to_bytes()
    partial = out.with_name(f".{out.name}.partial")
    try:
        with partial.open("wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_header(MANIFEST, len(manifest_bytes), mtime), io.BytesIO(manifest_bytes))
            if signatures is not None:
                tar.addfile(_header(SIGNATURES, len(signatures), mtime), io.BytesIO(signatures))
            for member in manifest.members:
                source = stage / member.path
                with source.open("rb") as handle:
                    tar.addfile(_header(member.path, member.size, mtime, member.mode),
                                io.BufferedReader(_Counting(handle, progress)))
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read_head(bundle: Path) -> tuple[bytes, bytes | None, tarfile.TarInfo]:
    """manifest.json bytes, signatures (None when unsigned) and the manifest's header."""
    with tarfile.open(bundle, mode="r:") as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isreg() or first.size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{bundle} does not start with manifest.json: it is not an appliance bundle.",
                              "Check the file name and copy it again.")
        manifest = _read(tar, first)
        second = tar.next()
        if second is not None and second.name == SIGNATURES and second.isreg() and second.size <= MAX_SIGNATURES_BYTES:
            return manifest, _read(tar, second), first
        return manifest, None, first


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    assert handle is not None
    return handle.read()


def replace_signatures(bundle: Path, signatures: bytes) -> None:
    """Rewrite the bundle with new signatures as its second member; payload bytes are copied unchanged."""
    partial = bundle.with_name(f".{bundle.name}.partial")
    try:
        with tarfile.open(bundle, mode="r:") as src, partial.open("wb") as raw, \
                tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as dst:
            infos = src.getmembers()
            manifest_info, rest = infos[0], infos[1:]
            if rest and rest[0].name == SIGNATURES:
                rest = rest[1:]  # replaced by the new set
            dst.addfile(manifest_info, src.extractfile(manifest_info))
            dst.addfile(_header(SIGNATURES, len(signatures), int(manifest_info.mtime)), io.BytesIO(signatures))
            for info in rest:
                dst.addfile(info, src.extractfile(info))
        partial.replace(bundle)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
