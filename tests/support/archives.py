"""Hostile template archives, built small and fast: bombs as repeated compressed streams, floods of members."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from collections.abc import Callable

MIB = 1 << 20
Compress = Callable[[bytes], bytes]
COMPRESSORS: dict[str, Compress] = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "tar": bytes}


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    return info.tobuf(format=tarfile.GNU_FORMAT)


def zeros(compress: Compress, size: int, chunk: int = 16 * MIB) -> bytes:
    """`size` zero bytes as one compressed stream per chunk: each decompressor reads concatenated streams."""
    assert size % chunk == 0
    return compress(bytes(chunk)) * (size // chunk)


def bomb(kind: str, *, members: int, size_each: int) -> bytes:
    """A tar whose members hold `size_each` zero bytes each, compressed as `kind`; tiny on the wire."""
    compress = COMPRESSORS[kind]
    body = zeros(compress, size_each, chunk=min(size_each, 16 * MIB))
    parts = [compress(header("main.tf", 0))]
    parts += [compress(header(f"data/{i}.bin", size_each)) + body for i in range(members)]
    return b"".join(parts) + compress(bytes(1024))


def pax_bomb(size: int) -> bytes:
    """A pax extended header declaring `size` bytes of records: tarfile reads it whole before any member."""
    return gzip.compress(header("././@PaxHeader", size, tarfile.XHDTYPE)) + zeros(gzip.compress, size)


def tar_of(*files: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
