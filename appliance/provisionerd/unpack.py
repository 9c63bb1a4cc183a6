"""Unpack a template's source archive for terraform, refusing anything that could escape the job dir or fill it.

The control plane runs the same checks (`check_archive`) when a version is uploaded, so a template
it accepts is one every daemon will unpack. Links, devices, absolute and escaping paths are checked
by hand because Debian 12's Python (3.11.2) predates tarfile's extraction filters. The limits
(unpacked bytes, members, path depth, duplicate names) are checked while the archive streams
through its decompressor, so a bomb costs at most MAX_UNPACKED_BYTES of decompression, never its
declared size.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

MAX_UNPACKED_BYTES = 16 << 20  # the tar stream, headers included; `templates push` sends at most 10 MiB of plain tar
MAX_MEMBERS = 1000             # files and directories
MAX_PATH_DEPTH = 16            # components of a member's path, its own name included
_MIB = 1 << 20
# Closed with the stream that wraps them (_Bounded.close).
_DECOMPRESSORS: dict[bytes, Callable[[io.BytesIO], io.BufferedIOBase]] = {
    b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw),
    b"BZh": lambda raw: bz2.BZ2File(raw),
    b"\xfd7zXZ\x00": lambda raw: lzma.LZMAFile(raw),  # noqa: SIM115 -- closed by _Bounded.close
}
_SHRINK_HINT = ("A template holds Terraform files and small scripts: leave build outputs, data, "
                "node_modules/ and .terraform/ out, and push the directory again.")


class ArchiveRefused(tarfile.TarError):
    """A template archive broke a rule or a limit; message names which and the value, hint what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message} {hint}")
        self.message = message
        self.hint = hint


def unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why a member may not be unpacked (links, devices, absolute or escaping paths), or None."""
    parts = Path(member.name).parts
    if not (member.isfile() or member.isdir()):
        return f"{member.name!r} is not a regular file or directory"
    if Path(member.name).is_absolute() or ".." in parts:
        return f"{member.name!r} points outside the template"
    if member.isfile() and not parts:
        return f"{member.name!r} is a file without a name"
    return None


class _Bounded(io.RawIOBase):
    """The decompressed stream, refused as soon as it passes MAX_UNPACKED_BYTES (pax headers included)."""

    def __init__(self, inner: io.BufferedIOBase) -> None:
        self.inner, self.total = inner, 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.inner.close()
        super().close()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(min(len(buffer), MAX_UNPACKED_BYTES + 1 - self.total))
        self.total += len(data)
        if self.total > MAX_UNPACKED_BYTES:
            raise _too_big("it unpacks to more than that")
        buffer[: len(data)] = data
        return len(data)


def _too_big(what: str) -> ArchiveRefused:
    return ArchiveRefused(f"The template archive is refused: a template may unpack to at most "
                          f"{MAX_UNPACKED_BYTES // _MIB} MiB, and {what}.", _SHRINK_HINT)


class _Tally:
    """The limits a member list must keep, counted member by member as they stream past."""

    def __init__(self) -> None:
        self.declared, self.names, self.files = 0, set[str](), set[str]()

    def add(self, member: tarfile.TarInfo) -> str:
        """The member's normalised path, or ArchiveRefused naming the rule or limit it breaks."""
        problem = unsafe_member(member)
        if problem:
            raise ArchiveRefused(f"The template archive is refused: {problem}.",
                                 "A template holds regular files only; remove links and paths outside the "
                                 "directory, then push it again.")
        name = PurePosixPath(member.name).as_posix()
        if len(self.names) >= MAX_MEMBERS:
            raise ArchiveRefused(f"The template archive is refused: it holds more than {MAX_MEMBERS} files and "
                                 f"directories (the limit).", _SHRINK_HINT)
        depth = len(PurePosixPath(name).parts)
        if depth > MAX_PATH_DEPTH:
            raise ArchiveRefused(f"The template archive is refused: {name!r} is {depth} levels deep; the limit is "
                                 f"{MAX_PATH_DEPTH}.", "Flatten the template's folders and push it again.")
        if name in self.names:
            raise ArchiveRefused(f"The template archive is refused: {name!r} appears twice, so which copy "
                                 "terraform would see depends on the unpacker.",
                                 "Push the template directory with `appliance templates push DIR`, which "
                                 "writes each file once.")
        inside_file = next((str(p) for p in PurePosixPath(name).parents if str(p) in self.files), None)
        if inside_file:
            raise ArchiveRefused(f"The template archive is refused: {name!r} is inside {inside_file!r}, which is "
                                 "a file.", "Push the template directory with `appliance templates push DIR`.")
        self.names.add(name)
        if member.isfile():
            self.files.add(name)
        self.declared += member.size
        if self.declared > MAX_UNPACKED_BYTES:
            raise _too_big(f"its files declare {self.declared / _MIB:.1f} MiB by {name!r}")
        return name


def _decompressed(source: bytes) -> IO[bytes]:
    raw = io.BytesIO(source)
    opener = next((o for magic, o in _DECOMPRESSORS.items() if source.startswith(magic)), None)
    return io.BufferedReader(_Bounded(opener(raw) if opener else raw))


Visit = Callable[[str, tarfile.TarInfo, "IO[bytes] | None"], None]


def _scan(source: bytes, visit: Visit | None = None) -> list[str]:
    """Every member's path, each checked as it streams past; `visit` sees each one with its content."""
    tally, names = _Tally(), []
    try:
        with _decompressed(source) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            while (member := tar.next()) is not None:
                name = tally.add(member)
                names.append(name)
                if visit is not None:
                    visit(name, member, tar.extractfile(member) if member.isfile() else None)
    except ArchiveRefused:
        raise
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as err:  # OSError: a damaged gzip or bz2 stream
        raise ArchiveRefused(f"The upload is not a tar archive ({err}).",
                             "Upload a tar (optionally gzip, bzip2 or xz compressed) of the template directory, "
                             "as `appliance templates push DIR` does.") from err
    return names


def check_archive(source: bytes) -> list[str]:
    """The member paths of an archive every daemon will unpack, or ArchiveRefused."""
    return _scan(source)


def _write(into: Path) -> Visit:
    def write(name: str, member: tarfile.TarInfo, content: IO[bytes] | None) -> None:
        target = into / name
        if content is None:
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            return
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        mode = 0o755 if member.mode & 0o100 else 0o644  # setuid and friends never survive
        with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as out:
            shutil.copyfileobj(content, out)
        target.chmod(mode)  # what the umask took away
    return write


def unpack_template(source: bytes, into: Path) -> None:
    """Extract the archive into `into`, then drop state and .terraform/ a careless push may carry.

    A first streamed pass checks every rule and limit, so a refused archive writes nothing.
    """
    check_archive(source)
    _scan(source, _write(into))
    for stale in [*into.glob("*.tfstate"), *into.glob("*.tfstate.backup"), into / ".terraform"]:
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
