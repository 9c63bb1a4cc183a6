"""Release receipts and maintenance mode on the wire.

The installer writes a `ReleaseRecord` as JSON and hands it to `appliance releases record --file F`
(it talks to the control plane only through the current release's CLI); the API and the console's
Releases page show the stored records with the SBOM diff against the release before.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import semver
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from appliance.sdk.base import Body, Line, Text, Timestamp

ReleaseKind = Literal["install", "upgrade", "rollback", "restore", "downgrade"]
ReleaseOutcome = Literal["succeeded", "failed", "rolled-back"]
StepOutcome = Literal["done", "undone", "failed", "skipped"]


def _semver(value: str) -> str:
    if not semver.Version.is_valid(value):
        raise ValueError(f"{value!r} is not a SemVer version such as 1.4.0")
    return value


Version = Annotated[Line, Field(max_length=64), AfterValidator(_semver)]
# The kinds whose success moves the anti-rollback floor (`appliance releases floor`).
FLOOR_KINDS: tuple[ReleaseKind, ...] = ("install", "upgrade", "downgrade")


class Signer(Body):
    fingerprint: Line = Field(max_length=128)
    user_id: Line = Field(default="", max_length=512)


class ReleaseStep(Body):
    name: Line = Field(max_length=128)
    seconds: float = Field(ge=0)
    outcome: StepOutcome


class ReleaseRecord(Body):
    """One run of the installer: what it installed, who signed it, each step and how it ended."""

    kind: ReleaseKind
    from_version: Version | None = None
    to_version: Version
    manifest_sha256: Line | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    signers: list[Signer] = Field(default_factory=list, max_length=64)
    plan: dict[str, Any] | None = None
    steps: list[ReleaseStep] = Field(default_factory=list, max_length=256)
    outcome: ReleaseOutcome
    failed_step: Line | None = Field(default=None, max_length=128)
    actor: Line = Field(min_length=1, max_length=256)
    started_at: AwareDatetime
    finished_at: AwareDatetime
    sbom: dict[str, Any] | None = Field(default=None, description="The release's CycloneDX JSON SBOM.")
    log: Text | None = Field(default=None, max_length=4096, description="Path of the installer's log.")


class Component(BaseModel):
    """A component of an SBOM, as the diff names it."""

    name: str
    version: str


class ComponentChange(BaseModel):
    name: str
    old_version: str
    new_version: str


class SbomDiff(BaseModel):
    """What changed between a release's SBOM and the previous release's, by component name and version."""

    previous_id: str | None = Field(description="The release compared against; null for the first one.")
    previous_version: str | None
    added: list[Component]
    removed: list[Component]
    changed: list[ComponentChange]


class ReleaseSummary(BaseModel):
    id: str
    kind: ReleaseKind
    from_version: str | None
    to_version: str
    outcome: ReleaseOutcome
    failed_step: str | None
    actor: str
    started_at: Timestamp
    finished_at: Timestamp
    seconds: float = Field(description="How long the run took, start to finish.")


class ReleaseResponse(ReleaseSummary):
    """One receipt in full, with its SBOM's components and the diff against the release before."""

    manifest_sha256: str | None
    signers: list[Signer]
    plan: dict[str, Any] | None
    steps: list[ReleaseStep]
    log: str | None
    recorded_at: Timestamp
    components: list[Component]
    sbom_diff: SbomDiff


class ReleaseListResponse(BaseModel):
    releases: list[ReleaseSummary]
    floor: str | None = Field(description="The anti-rollback floor: highest version installed successfully.")


class MaintenanceStatus(BaseModel):
    """`appliance maintenance status --output json`, and what a 503 during maintenance names."""

    active: bool
    reason: str | None
    since: Timestamp | None
