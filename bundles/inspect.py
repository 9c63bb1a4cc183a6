"""What a bundle holds, for people: version, signers, expiry, sizes by role, SBOM contents; and diffs."""

from __future__ import annotations

import json
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundles.errors import BundleError
from bundles.layout import SBOM, sbom_kind
from bundles.manifest import Manifest, digest, parse_manifest
from bundles.tarball import read_head
from bundles.verify import TrustPolicy, VerifiedBundle, verify_bundle


@dataclass(frozen=True)
class BundleReport:
    manifest: Manifest
    manifest_sha256: str
    verified: VerifiedBundle | None
    signature_count: int
    sbom: dict[str, Any]

    def components(self) -> dict[tuple[str, str], str]:
        """(kind, name) -> version for everything the SBOM lists."""
        return sbom_components(self.sbom)

    def sbom_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind, _ in self.components():
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.manifest.version,
            "product": self.manifest.product,
            "created_at": self.manifest.created_at.isoformat(),
            "expires_at": self.manifest.expires_at.isoformat(),
            "min_upgrade_from": self.manifest.min_upgrade_from,
            "manifest_sha256": self.manifest_sha256,
            "verified": self.verified is not None,
            "signers": [s.to_json() for s in self.verified.signers] if self.verified else [],
            "signature_count": self.signature_count,
            "size_by_role": self.manifest.size_by_role(),
            "total_size": self.manifest.total_size,
            "sbom_counts": self.sbom_counts(),
            "build": self.manifest.build,
        }


def sbom_components(sbom: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(kind, name) -> version for everything a CycloneDX SBOM (a bundle's, or an installed release's) lists."""
    return {(sbom_kind(c), c["name"]): c["version"] for c in sbom.get("components", [])}


def _read_sbom(bundle: Path) -> dict[str, Any]:
    with tarfile.open(bundle, mode="r:") as tar:
        try:
            handle = tar.extractfile(SBOM)
        except KeyError:
            return {}
        return json.loads(handle.read()) if handle else {}


def inspect_bundle(bundle: Path, policy: TrustPolicy | None) -> BundleReport:
    """Read a bundle's description; with a policy it is fully verified first (and refused if bad)."""
    try:
        manifest_bytes, signatures, _ = read_head(bundle)
    except (tarfile.ReadError, OSError) as err:
        raise BundleError(f"Cannot read {bundle}: {err}.", "Check the path and copy the bundle again.") from err
    verified = verify_bundle(bundle, policy) if policy is not None else None
    manifest = verified.manifest if verified else parse_manifest(manifest_bytes)
    count = signatures.count(b"-----BEGIN PGP SIGNATURE-----") if signatures else 0
    return BundleReport(manifest, digest(manifest_bytes), verified, count, _read_sbom(bundle))


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    old: str | None
    new: str | None

    @property
    def what(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"


def diff_bundles(old: BundleReport, new: BundleReport) -> list[Change]:
    return diff_components(old.components(), new.components())


def diff_components(before: dict[tuple[str, str], str], after: dict[tuple[str, str], str]) -> list[Change]:
    """What changed between two SBOMs' components (sbom_components), sorted by kind and name."""
    return [Change(kind, name, before.get((kind, name)), after.get((kind, name)))
            for kind, name in sorted(set(before) | set(after))
            if before.get((kind, name)) != after.get((kind, name))]


_APPLIANCE_WHEEL = re.compile(r"^wheels/appliance-[^-/]+-[^/]*\.whl$")
_MIGRATION = re.compile(r"^appliance/db/migrations/(\d{6}_[a-z0-9_]+)\.up\.sql$")


def wheel_migrations(bundle: Path) -> list[str] | None:
    """The migration names (000010_name) the bundle's appliance wheel carries, or None without a readable wheel.

    Read only from a bundle already verified: the wheel is opened in place inside the uncompressed tar.
    """
    with tarfile.open(bundle, mode="r:") as tar:
        for info in tar:
            if info.isreg() and _APPLIANCE_WHEEL.match(info.name):
                handle = tar.extractfile(info)
                assert handle is not None
                try:
                    with zipfile.ZipFile(handle) as wheel:
                        return sorted(m.group(1) for name in wheel.namelist() if (m := _MIGRATION.match(name)))
                except zipfile.BadZipFile:
                    return None
    return None
