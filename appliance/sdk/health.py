"""The health report on the wire: `GET /api/v2/debug/health`, `appliance health` and the console's Health page.

Shaped after Coder's healthsdk so its dashboards and habits carry over: one section per component,
each with a severity and findings that carry a stable code. Coder's codes are kept where the check is
the same (EACS, EDB, EDERP, EWS, EPD); the appliance's own checks use codes of their own (ECERT, EBAK,
EDISK, EBUN, ECLK, EMIR, EREG, EUPG). An owner may dismiss a finding by its code: it is still reported,
marked dismissed, and no longer counts towards its section's severity or the report's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from appliance.sdk.base import Body, Line, Timestamp


class Severity(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        """`appliance health` exits like a monitoring plugin: 0 ok, 1 warning, 2 error."""
        return self.rank


_RANK = {Severity.OK: 0, Severity.WARNING: 1, Severity.ERROR: 2}


def worst(severities: list[Severity]) -> Severity:
    return max(severities, key=lambda s: s.rank, default=Severity.OK)


# Every code a check may report, with its section. A check reporting a code not listed here is a bug
# (a unit test walks the checks); the console links each code to its explanation in docs/health.md.
CODES: dict[str, str] = {
    "EACS01": "access_url",     # the access URL is not set or not a URL
    "EACS02": "access_url",     # the access URL cannot be reached
    "EACS03": "access_url",     # /healthz at the access URL answered other than 200
    "EACS04": "access_url",     # /healthz at the access URL answered 200 but not "OK"
    "EDB01": "database",        # PostgreSQL cannot be reached or the ping failed
    "EDB02": "database",        # the ping took longer than the threshold
    "EDERP01": "derp",          # the relay works only through its WebSocket fallback
    "EDERP02": "derp",          # the relay cannot exchange messages between two peers
    "EWS01": "websocket",       # a WebSocket to the gateway cannot be opened
    "EWS02": "websocket",       # the WebSocket echo came back wrong
    "EPD01": "provisioner_daemons",  # no provisioner daemon has been seen recently
    "EPD02": "provisioner_daemons",  # a daemon runs another version than the control plane
    "EPD03": "provisioner_daemons",  # a daemon speaks another API version
    "ECERT01": "certificates",  # a certificate expires within the renewal window
    "ECERT02": "certificates",  # a certificate has expired (or the CA itself is close to expiry)
    "EBAK01": "backups",        # no good backup newer than the threshold
    "EBAK02": "backups",        # the last backup run failed
    "EDISK01": "disk",          # free space on the data or release filesystem is low
    "EDISK02": "disk",          # free space is critically low: upgrades and backups will fail
    "EBUN01": "bundle",         # the installed bundle expires soon
    "EBUN02": "bundle",         # the installed bundle has expired
    "ECLK01": "bundle",         # the clock is before the installed bundle's creation time
    "EMIR01": "mirror",         # an active template needs a provider the mirror lacks
    "EREG01": "registry",       # the registry cannot be reached
    "EREG02": "registry",       # an active template's image is not in the registry
    "EUPG01": "upgrade",        # an upgrade, rollback or restore journal was left unfinished
    "EUPG02": "upgrade",        # maintenance mode is on
}


class HealthFinding(BaseModel):
    code: str = Field(description="A stable code, e.g. EDB01; see docs/health.md.")
    severity: Severity
    message: str = Field(description="What is wrong and what to do about it.")
    dismissed: bool = False


class HealthSection(BaseModel):
    severity: Severity
    healthy: bool
    dismissed: bool = Field(False, description="True when every finding of the section is dismissed.")
    error: str | None = Field(None, description="The first error finding as 'CODE: message' (Coder's shape).")
    findings: list[HealthFinding] = []
    details: dict[str, Any] = Field({}, description="What the check measured (latency_ms, round_trip_ms, ...).")


SECTIONS = ("access_url", "database", "derp", "websocket", "provisioner_daemons", "certificates", "backups",
            "disk", "bundle", "mirror", "registry", "upgrade")


class HealthReport(BaseModel):
    time: Timestamp
    healthy: bool
    severity: Severity
    appliance_version: str
    access_url: HealthSection
    database: HealthSection
    derp: HealthSection
    websocket: HealthSection
    provisioner_daemons: HealthSection
    certificates: HealthSection
    backups: HealthSection
    disk: HealthSection
    bundle: HealthSection
    mirror: HealthSection
    registry: HealthSection
    upgrade: HealthSection

    def sections(self) -> list[tuple[str, HealthSection]]:
        return [(name, getattr(self, name)) for name in SECTIONS]


class HealthSettings(BaseModel):
    dismissed_codes: list[str] = Field(description="Codes an owner dismissed; see CODES.")


class HealthSettingsRequest(Body):
    dismissed_codes: list[Line] = Field(max_length=len(CODES))
