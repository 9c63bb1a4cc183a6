"""Console upgrades on the wire and on disk (docs/adr/0039): an uploaded bundle's verification report,
the apply request the root path unit reads, and the events the progress stream sends.

The apply request is also read by `appliance-installer apply-request` (installer/console_request.py),
which may not import appliance: it checks the same fields itself, as a root process must anyway.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from appliance.sdk.base import Body, Line

MANIFEST_SHA256 = r"^[0-9a-f]{64}$"
UPLOAD_ID = r"^[0-9a-f]{16}$"
APPLY_REQUEST = "apply.json"  # the spool file appliance-upgrade.path watches
BUNDLE_SUFFIX = ".bundle"  # an upload, complete; `<id>.bundle`
REPORT_SUFFIX = ".json"  # its verification report; `<id>.json`


class BundleSigner(Body):
    fingerprint: Line = Field(max_length=128)
    user_id: Line = Field(default="", max_length=512)


class ComponentChange(Body):
    kind: Line
    name: Line
    old: Line | None
    new: Line | None
    what: Line  # added, removed or changed


class UpgradeReport(Body):
    """What the console showed the owner: written once the gateway verified the upload, read by the page."""

    upload_id: Line = Field(pattern=UPLOAD_ID)
    size: int = Field(ge=0)
    version: Line
    installed_version: Line
    product: Line
    manifest_sha256: Line = Field(pattern=MANIFEST_SHA256)
    signers: list[BundleSigner]
    created_at: AwareDatetime
    expires_at: AwareDatetime
    min_upgrade_from: Line
    size_by_role: dict[str, int]
    diff: list[ComponentChange] | None = Field(
        description="The bundle's SBOM against the running release's; null when that is unknown (embedded).")
    migrations: list[Line] | None = Field(description="Every migration the bundle's appliance wheel holds.")
    pending_migrations: list[Line] | None = Field(description="Those this database has not applied.")
    verified_at: AwareDatetime


class ApplyRequest(Body):
    """spool/apply.json: the owner's request, applied by the root unit and removed when it starts."""

    bundle: Line = Field(pattern=r"^[0-9a-f]{16}\.bundle$", description="A file name inside the spool.")
    manifest_sha256: Line = Field(pattern=MANIFEST_SHA256, description="The manifest the owner saw verified.")
    actor: Line = Field(min_length=1, max_length=256)
    requested_at: AwareDatetime
