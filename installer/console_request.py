"""`appliance-installer apply-request`: the upgrade an owner asked for in the console, run as root.

The console never runs as root: it writes SPOOL/apply.json (atomically) and appliance-upgrade.path
starts appliance-upgrade.service, which runs this (docs/adr/0039). The spool is writable by the
console's user, so nothing in it is trusted: the request is removed before anything runs (the path
unit must not start it twice), its bundle must be a plain name of a regular file in the spool (no
link, no path), the digest 64 hex; `upgrade` then verifies the bundle with the pinned keys and
refuses any manifest but the one the owner saw (--expect-manifest).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from installer.errors import InstallError

REQUEST = "apply.json"
_BUNDLE = re.compile(r"[0-9a-f]{16}\.bundle")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ACTOR = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,256}")
MAX_REQUEST_BYTES = 4096


@dataclass(frozen=True)
class ApplyRequest:
    bundle: Path
    manifest_sha256: str
    actor: str


def _refused(problem: str) -> InstallError:
    return InstallError(f"The console's upgrade request is refused: {problem}.",
                        "Upload the bundle again on the console's Upgrade page and apply it from there.",
                        step="apply-request")


def _read_once(path: Path) -> bytes:
    """The request's bytes, then the request is gone: whatever follows, the path unit will not start it again."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise _refused(f"{path} is not a regular file")
            return handle.read(MAX_REQUEST_BYTES + 1)
    except FileNotFoundError as err:
        raise _refused(f"there is no {path}") from err
    except OSError as err:  # a link (O_NOFOLLOW), or unreadable
        raise _refused(f"{path} cannot be opened ({err.strerror})") from err
    finally:
        path.unlink(missing_ok=True)


def take_request(spool: Path) -> ApplyRequest:
    """Read, remove and check SPOOL/apply.json (the shape appliance.sdk.upgrades.ApplyRequest writes)."""
    raw = _read_once(spool / REQUEST)
    try:
        data = json.loads(raw) if len(raw) <= MAX_REQUEST_BYTES else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise _refused("it is not a JSON object of at most 4 KiB")
    bundle, digest, actor = data.get("bundle"), data.get("manifest_sha256"), data.get("actor")
    if not isinstance(bundle, str) or not _BUNDLE.fullmatch(bundle):
        raise _refused("its bundle is not the name of an upload in the spool")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise _refused("its manifest_sha256 is not 64 hex digits")
    if not isinstance(actor, str) or not _ACTOR.fullmatch(actor):
        raise _refused("its actor is not one line of 1 to 256 characters")
    path = spool / bundle
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError as err:
        raise _refused(f"{path} does not exist (deleted after the request?)") from err
    if not stat.S_ISREG(mode):
        raise _refused(f"{path} is not a regular file")
    return ApplyRequest(path, digest, actor)


def upgrade_args(request: ApplyRequest) -> list[str]:
    """The `upgrade` command line for the request: no prompt, the owner's manifest, the owner as the actor."""
    return ["upgrade", str(request.bundle), "--yes", "--expect-manifest", request.manifest_sha256,
            "--actor", f"console:{request.actor}"]


def _this_installer() -> list[str]:
    """The running installer: the one PyInstaller executable on a host, `python -m installer` from source."""
    return [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "installer"]


def apply_request(spool: Path) -> int:
    """Run the requested upgrade; its exit code. A bundle that is now installed leaves the spool."""
    request = take_request(spool)
    code = subprocess.run([*_this_installer(), *upgrade_args(request)], check=False).returncode
    if code == 0:
        request.bundle.unlink(missing_ok=True)
        request.bundle.with_suffix(".json").unlink(missing_ok=True)
    return code
