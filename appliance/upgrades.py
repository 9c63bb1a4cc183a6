"""Console upgrades (docs/adr/0039): the spool of uploaded bundles, their verification, and apply requests.

The spool (config upgrade_spool_dir; installed: /var/lib/appliance/upgrade-requests, the console's
user owns it, root reads it) holds:

    .<id>.partial    an upload still arriving (removed when the request ends without it)
    <id>.bundle      an upload, complete
    <id>.json        its verification report (UpgradeReport), written by the gateway once verified
    apply.json       the apply request appliance-upgrade.path watches (ApplyRequest, written atomically)

A bundle that fails verification is removed with its report: a refused upload leaves nothing behind.
The console only reads a bundle; the root unit's installer verifies it again before it changes anything.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from appliance import buildinfo
from appliance.config import ServerConfig
from appliance.db.database import Connection
from appliance.errors import Conflict, NotFound
from appliance.sdk.upgrades import (
    APPLY_REQUEST,
    BUNDLE_SUFFIX,
    REPORT_SUFFIX,
    UPLOAD_ID,
    ApplyRequest,
    BundleSigner,
    ComponentChange,
    UpgradeReport,
)
from bundles.errors import BundleError
from bundles.inspect import diff_components, sbom_components, wheel_migrations
from bundles.layout import SBOM
from bundles.verify import TrustPolicy, VerifiedBundle, verify_bundle

log = logging.getLogger(__name__)
_UPLOAD_ID = re.compile(UPLOAD_ID)
Progress = Callable[[int], None]


def new_upload_id() -> str:
    return secrets.token_hex(8)


def partial_path(spool: Path, upload_id: str) -> Path:
    return spool / f".{upload_id}.partial"


def bundle_path(spool: Path, upload_id: str) -> Path:
    """The complete upload `upload_id`; NotFound for an id that names none (or is not an id at all)."""
    path = spool / f"{upload_id}{BUNDLE_SUFFIX}"
    if not _UPLOAD_ID.fullmatch(upload_id) or not path.is_file():
        raise NotFound(f"There is no uploaded bundle {upload_id!r}.",
                       "Upload the bundle again on the Upgrade page.")
    return path


def report_path(spool: Path, upload_id: str) -> Path:
    return spool / f"{upload_id}{REPORT_SUFFIX}"


def discard(spool: Path, upload_id: str) -> None:
    for path in (spool / f"{upload_id}{BUNDLE_SUFFIX}", report_path(spool, upload_id), partial_path(spool, upload_id)):
        path.unlink(missing_ok=True)


def write_atomically(path: Path, body: bytes) -> None:
    """Write a whole file or nothing: a reader (the root path unit) never sees half of it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with temporary.open("xb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        temporary.chmod(0o640)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_report(spool: Path, upload_id: str) -> UpgradeReport | None:
    """The verification report of an upload, or None while the gateway has not verified it yet."""
    bundle_path(spool, upload_id)
    try:
        return UpgradeReport.model_validate_json(report_path(spool, upload_id).read_bytes())
    except FileNotFoundError:
        return None


def applied_migrations(conn: Connection) -> set[int]:
    return {int(row["version"]) for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}


def verify_upload(config: ServerConfig, upload_id: str, applied: set[int],
                  progress: Progress | None = None) -> UpgradeReport:
    """Verify an upload (read only) and write its report; a refused bundle is removed and its BundleError raised.

    Slow for a big bundle (it hashes every byte): the gateway runs it on a thread, never a WSGI worker.
    """
    spool = config.upgrade_spool_dir
    bundle = bundle_path(spool, upload_id)
    # Anti-rollback as the installer applies it; an authorized downgrade goes through the installer's CLI.
    policy = TrustPolicy.from_keyring_file(config.trusted_keys_file, installed_version=buildinfo.version())
    try:
        verified = verify_bundle(bundle, policy, progress=progress)
        report = _report(config, upload_id, bundle, verified, applied)
    except BundleError:
        discard(spool, upload_id)
        raise
    write_atomically(report_path(spool, upload_id), report.model_dump_json(indent=1).encode())
    log.info("upgrade_bundle_verified", extra={"upload_id": upload_id, "version": report.version,
                                               "manifest_sha256": report.manifest_sha256})
    return report


def _report(config: ServerConfig, upload_id: str, bundle: Path, verified: VerifiedBundle,
            applied: set[int]) -> UpgradeReport:
    manifest = verified.manifest
    migrations = wheel_migrations(bundle)
    return UpgradeReport(
        upload_id=upload_id, size=bundle.stat().st_size, version=manifest.version,
        installed_version=buildinfo.version(), product=manifest.product, manifest_sha256=verified.manifest_sha256,
        signers=[BundleSigner(fingerprint=s.fingerprint, user_id=s.user_id) for s in verified.signers],
        created_at=manifest.created_at, expires_at=manifest.expires_at, min_upgrade_from=manifest.min_upgrade_from,
        size_by_role=manifest.size_by_role(), diff=_diff(config, bundle), migrations=migrations,
        pending_migrations=None if migrations is None else
        [name for name in migrations if int(name.split("_", 1)[0]) not in applied],
        verified_at=verified.verified_at)


def _read_sbom(source: Path) -> dict[str, Any] | None:
    try:
        sbom: dict[str, Any] = json.loads(source.read_bytes())
    except (OSError, ValueError):
        return None
    return sbom


def _diff(config: ServerConfig, bundle: Path) -> list[ComponentChange] | None:
    """The bundle's SBOM against the running release's (release_dir/sbom.cdx.json), by component."""
    installed = _read_sbom(config.release_dir / SBOM) if config.release_dir is not None else None
    if installed is None:
        return None
    with tarfile.open(bundle, mode="r:") as tar:
        try:
            handle = tar.extractfile(SBOM)
        except KeyError:
            return None
        new: dict[str, Any] = json.loads(handle.read()) if handle else {}
    return [ComponentChange(kind=c.kind, name=c.name, old=c.old, new=c.new, what=c.what)
            for c in diff_components(sbom_components(installed), sbom_components(new))]


def pending_request(spool: Path) -> ApplyRequest | None:
    """The apply request waiting for (or being taken by) the root unit, if any."""
    try:
        return ApplyRequest.model_validate_json((spool / APPLY_REQUEST).read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError:
        log.warning("upgrade_apply_request_unreadable", extra={"path": str(spool / APPLY_REQUEST)})
        return None


def request_apply(config: ServerConfig, upload_id: str, manifest_sha256: str, actor: str) -> ApplyRequest:
    """Write spool/apply.json for a verified upload, naming the manifest the owner saw; one request at a time."""
    spool = config.upgrade_spool_dir
    report = read_report(spool, upload_id)
    if report is None:
        raise Conflict("This bundle is still being verified.", "Wait for the verification to finish, then apply.")
    if report.manifest_sha256 != manifest_sha256:
        raise Conflict("The bundle's manifest is not the one this page showed.",
                       "Reload the page, check the verification again, then apply.")
    if (spool / APPLY_REQUEST).exists():
        raise Conflict("An upgrade is already requested and not yet started.",
                       "Wait for it to start (the progress shows below), then try again.")
    request = ApplyRequest(bundle=bundle_path(spool, upload_id).name, manifest_sha256=manifest_sha256,
                           actor=actor, requested_at=datetime.now(UTC))
    write_atomically(spool / APPLY_REQUEST, request.model_dump_json().encode())
    log.info("upgrade_apply_requested", extra={"upload_id": upload_id, "actor": actor,
                                               "manifest_sha256": manifest_sha256})
    return request


def read_installer_json(path: Path) -> dict[str, Any] | None:
    """A JSON object the installer wrote (its journal, a receipt, the backups' summary) as it stands, or None
    when there is none, it is unreadable or mid-write."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
