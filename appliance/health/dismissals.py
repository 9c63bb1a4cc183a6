"""Which codes an owner dismissed (table health_dismissals, migration 000011)."""

from __future__ import annotations

from uuid import UUID

from appliance.audit.record import RequestInfo, record
from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.db.database import Connection
from appliance.errors import InvalidInput
from appliance.sdk.health import CODES, HealthSettings


def dismissed_codes(conn: Connection) -> list[str]:
    return [r["code"] for r in conn.execute("SELECT code FROM health_dismissals ORDER BY code").fetchall()]


def replace(conn: Connection, codes: list[str], user_id: UUID) -> tuple[list[str], list[str]]:
    """Make `codes` the dismissed set; returns (added, removed) for the audit log."""
    unknown = sorted(set(codes) - set(CODES))
    if unknown:
        raise InvalidInput(f"Unknown health code(s) {', '.join(unknown)} in dismissed_codes.",
                           "Use codes from the health report, e.g. EBAK01; docs/health.md lists them all.")
    before = set(dismissed_codes(conn))
    wanted = set(codes)
    conn.execute("DELETE FROM health_dismissals WHERE NOT (code = ANY(%s))", (sorted(wanted),))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO health_dismissals (code, dismissed_by) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        [(code, user_id) for code in sorted(wanted - before)])
    return sorted(wanted - before), sorted(before - wanted)


def save(conn: Connection, subject: Subject, codes: list[str], info: RequestInfo) -> HealthSettings:
    """PUT /api/v2/debug/health/settings and the console's Dismiss button: authorize, replace, audit."""
    authorize(subject, Action.UPDATE, Resource(ResourceType.HEALTH))
    added, removed = replace(conn, codes, subject.user_id)
    if added or removed:
        record(conn, actor=subject, action="write", resource_type="health_settings", target="dismissed_codes",
               diff={"dismissed_codes": {"old": removed, "new": added, "secret": False}}, info=info)
    return HealthSettings(dismissed_codes=dismissed_codes(conn))
