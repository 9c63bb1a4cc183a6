"""Pack a template directory as the tar archive the control plane stores.

Deterministic (sorted, no times, owners or umask) so a re-push of the same files has the same
hash; .terraform/, .git/ and state files (which hold secrets and belong to a workspace) stay out.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from appliance.errors import OperatorError

MAX_SOURCE_BYTES = 10 * 1024 * 1024          # the server refuses larger uploads too
SKIPPED_DIRS = frozenset({".terraform", ".git"})
SKIPPED_FILES = ("*.tfstate*",)           # state holds secrets and belongs to a workspace, not the template


@dataclass(frozen=True)
class SourceFile:
    name: str       # POSIX path inside the template
    path: Path
    size: int
    is_executable: bool


def template_files(root: Path) -> list[SourceFile]:
    """The files a push uploads, sorted; .terraform/, .git/ and state files are left out."""
    if not root.is_dir():
        raise OperatorError(f"{root} is not a directory.", "Give the directory that holds the template's main.tf.")
    if not any(p.is_file() and (p.suffix == ".tf" or p.name.endswith(".tf.json")) for p in root.iterdir()):
        raise OperatorError(f"{root} has no .tf files.", "Give the directory that holds the template's main.tf.")
    found: list[SourceFile] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        base = Path(folder)
        for entry in [*dirnames, *filenames]:
            path = base / entry
            if path.is_symlink():
                raise OperatorError(f"{path} is a symbolic link; a template holds regular files only.",
                                    "Copy what it points to into the template directory, or remove the link.")
        for filename in sorted(filenames):
            if any(fnmatch(filename, pattern) for pattern in SKIPPED_FILES):
                continue
            path = base / filename
            stat = path.stat()
            found.append(SourceFile(path.relative_to(root).as_posix(), path, stat.st_size,
                                    bool(stat.st_mode & 0o100)))
    return sorted(found, key=lambda f: f.name)


def source_archive(root: Path) -> bytes:
    """A deterministic tar of the template: same files and contents, same bytes (no times, owners, umask)."""
    files = template_files(root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for source in files:
            info = tarfile.TarInfo(source.name)
            info.size, info.mtime, info.mode = source.size, 0, 0o755 if source.is_executable else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with source.path.open("rb") as handle:
                tar.addfile(info, handle)
            if buffer.tell() > MAX_SOURCE_BYTES:
                raise _too_large(root, files)
    if len(buffer.getvalue()) > MAX_SOURCE_BYTES:
        raise _too_large(root, files)
    return buffer.getvalue()


def _too_large(root: Path, files: list[SourceFile]) -> OperatorError:
    mib = 1024 * 1024
    total = sum(f.size for f in files)
    largest = ", ".join(f"{f.name} ({f.size / mib:.1f} MiB)" for f in sorted(files, key=lambda f: -f.size)[:3])
    return OperatorError(f"The template in {root} is {total / mib:.1f} MiB; a push takes at most "
                         f"{MAX_SOURCE_BYTES // mib} MiB.",
                         f"The largest files are {largest}. Move build outputs and data out of the template "
                         "directory (.terraform/, .git/ and *.tfstate* are already left out).")
