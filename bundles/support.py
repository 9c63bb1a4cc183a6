"""The support bundle: a zip an offline site may carry out, every file redacted, with a sha256 manifest.

`appliance support-bundle` (through the API) and `appliance-installer support-bundle` (on the host)
collect into a SupportBundle, show its summary, then write it: to a temporary file in the target
folder, renamed into place only when complete, so a full disk leaves no partial zip
(docs/adr/0044-support-bundle.md).

Layout: manifest.json ({"format", "kind", "created_at", "files": [{"name", "size", "sha256"}]})
beside the collected files; a part that could not be collected is a file holding
"unavailable: <error>" instead of its content.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bundles.errors import BundleError
from operator_errors import OperatorError
from operator_errors.redaction import redact_mapping, redact_text

FORMAT = 1
MANIFEST = "manifest.json"
UNAVAILABLE = "unavailable: "
_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class SupportBundle:
    """The files collected so far, each redacted as it is added, against `secrets` (values known to be secret)."""

    kind: str  # "appliance" (the API's view) or "host" (the installer's)
    secrets: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def add_text(self, name: str, text: str) -> None:
        self.files[name] = redact_text(text, self.secrets).encode()

    def add_json(self, name: str, value: Any) -> None:
        self.add_text(name, json.dumps(redact_mapping(value, self.secrets), indent=2, default=str) + "\n")

    def unavailable(self, name: str, error: str) -> None:
        """Record that a part could not be collected, and why, in place of its content."""
        self.add_text(name, f"{UNAVAILABLE}{error}\n")

    def manifest(self, created_at: datetime) -> dict[str, Any]:
        return {"format": FORMAT, "kind": self.kind, "created_at": created_at.isoformat(),
                "files": [{"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for name, data in sorted(self.files.items())]}

    def summary(self) -> list[str]:
        """What would be written, one line per file (name and size), and the total."""
        lines = [f"  {name:<48} {_size(len(data)):>10}" for name, data in sorted(self.files.items())]
        total = _size(sum(len(d) for d in self.files.values()))
        return [*lines, f"  {len(self.files)} files, {total} before compression"]

    def write(self, target: Path) -> Path:
        """Write the zip to `target` atomically; a BundleError naming the folder (and the space needed) on failure."""
        folder = target.parent
        created_at = datetime.now(UTC)
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".partial")
        except OSError as err:
            raise self._error(err, folder) from err
        partial = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                    for member, data in sorted(self.files.items()):
                        archive.writestr(member, data)
                    archive.writestr(MANIFEST, json.dumps(self.manifest(created_at), indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            partial.replace(target)
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise self._error(err, folder) from err
        return target

    def _error(self, err: OSError, folder: Path) -> BundleError:
        needed = sum(len(d) for d in self.files.values())
        if err.errno in _FULL:
            free = shutil.disk_usage(folder).free
            return BundleError(f"the disk holding {folder} is full ({_size(free)} free; the support bundle needs up to "
                               f"{_size(needed)}); no partial bundle was left.",
                               "Free some space there, or pass --output-file on a disk with room.")
        return BundleError(f"cannot write the support bundle in {folder}: {err.strerror or err}.",
                           "Pass --output-file in a folder you can write to.")


def check_manifest(path: Path) -> list[str]:
    """The files of the zip at `path` listed in its manifest; BundleError if any is missing, extra or changed."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        names = {info.filename for info in archive.infolist()} - {MANIFEST}
        listed = {entry["name"]: entry for entry in manifest["files"]}
        if names != set(listed):
            raise BundleError(f"{path}: the manifest lists {sorted(set(listed) - names)} missing and does not list "
                              f"{sorted(names - set(listed))}.", "Collect the support bundle again.")
        for name, entry in listed.items():
            if hashlib.sha256(archive.read(name)).hexdigest() != entry["sha256"]:
                raise BundleError(f"{path}: {name} does not match its sha256 in {MANIFEST}.",
                                  "Collect the support bundle again.")
    return sorted(listed)


def require_terminal_or_yes(yes: bool) -> None:
    """Checked before collecting: without a terminal nobody can answer the question write_confirmed asks."""
    if not yes and not sys.stdin.isatty():
        raise OperatorError("support-bundle asks for confirmation before writing, and stdin is not a terminal.",
                            "Pass --yes to write it without asking.")


def write_confirmed(bundle: SupportBundle, target: Path, *, yes: bool) -> None:
    """Show what was collected, ask before writing unless `yes`, write, and say where."""
    click.echo("Collected (every file redacted):", err=True)
    click.echo("\n".join(bundle.summary()), err=True)
    if not yes:
        click.confirm(f"Write {target}?", abort=True, err=True, default=True)
    click.echo(f"Wrote {bundle.write(target)}.")


def default_name(kind: str, moment: datetime | None = None) -> str:
    return f"support-bundle-{kind}-{(moment or datetime.now(UTC)):%Y%m%dT%H%M%SZ}.zip"


def secret_values(values: Iterable[str | None]) -> list[str]:
    """The non-empty secrets among `values`, stripped (secrets files end with a newline)."""
    return [v.strip() for v in values if v and v.strip()]


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"
