"""The two hash schemes Terraform records for a provider package.

- zh: the lowercase hex SHA-256 of the zip file itself.
- h1: Go's dirhash "Hash1" over the zip's entries: for every entry name (directories included),
  sorted bytewise, the line "<hex sha256 of its content>  <name>\\n"; then base64 of the
  SHA-256 of all those lines. It survives re-zipping, because it hashes contents, not the zip.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

CHUNK = 1 << 20


def zip_hash(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return "zh:" + hasher.hexdigest()


def dirhash_h1(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        lines = []
        for name in sorted(archive.namelist(), key=lambda n: n.encode()):
            if "\n" in name:
                raise ValueError(f"zip entry name {name!r} contains a newline")
            hasher = hashlib.sha256()
            with archive.open(name) as entry:
                while chunk := entry.read(CHUNK):
                    hasher.update(chunk)
            lines.append(f"{hasher.hexdigest()}  {name}\n")
    summary = hashlib.sha256("".join(lines).encode()).digest()
    return "h1:" + base64.b64encode(summary).decode()
