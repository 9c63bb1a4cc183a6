"""The release history: the installer's receipts, kept in PostgreSQL, and the anti-rollback floor.

The installer records each run through `appliance releases record` (idempotent on kind, start time
and version, so a resumed run records once). The API and the console's Releases page read them
back, each with its SBOM's components and what changed since the release before.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import semver
from psycopg.types.json import Jsonb

from appliance.audit.record import record
from appliance.db.database import Connection, Row
from appliance.sdk.releases import (
    FLOOR_KINDS,
    Component,
    ComponentChange,
    ReleaseRecord,
    ReleaseResponse,
    ReleaseSummary,
    SbomDiff,
)


def record_release(conn: Connection, rec: ReleaseRecord) -> tuple[str, bool]:
    """Store a receipt: (its id, True) the first time, (the stored one's id, False) after."""
    row = conn.execute(
        "INSERT INTO release_history (kind, from_version, to_version, manifest_sha256, signers, plan, steps,"
        " outcome, failed_step, actor, started_at, finished_at, sbom, log)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (kind, started_at, to_version) DO NOTHING RETURNING id",
        (rec.kind, rec.from_version, rec.to_version, rec.manifest_sha256,
         Jsonb([s.model_dump() for s in rec.signers]), None if rec.plan is None else Jsonb(rec.plan),
         Jsonb([s.model_dump() for s in rec.steps]), rec.outcome, rec.failed_step, rec.actor, rec.started_at,
         rec.finished_at, None if rec.sbom is None else Jsonb(rec.sbom), rec.log)).fetchone()
    if row is None:
        kept = conn.execute("SELECT id FROM release_history WHERE kind = %s AND started_at = %s AND to_version = %s",
                            (rec.kind, rec.started_at, rec.to_version)).fetchone()
        assert kept is not None
        return str(kept["id"]), False
    record(conn, actor=None, actor_name=rec.actor, action="create", resource_type="release",
           resource_id=row["id"], target=f"{rec.kind} {rec.from_version or '-'} -> {rec.to_version}",
           diff={"outcome": {"old": None, "new": rec.outcome, "secret": False}})
    return str(row["id"]), True


def version_floor(conn: Connection) -> str | None:
    """The highest version a succeeded install, upgrade or downgrade put in place; None before any."""
    rows = conn.execute("SELECT DISTINCT to_version FROM release_history WHERE outcome = 'succeeded'"
                        " AND kind = ANY(%s)", (list(FLOOR_KINDS),)).fetchall()
    versions = [row["to_version"] for row in rows]
    return max(versions, key=semver.Version.parse) if versions else None


def list_releases(conn: Connection) -> list[ReleaseSummary]:
    rows = conn.execute(
        "SELECT id, kind, from_version, to_version, outcome, failed_step, actor, started_at, finished_at"
        " FROM release_history ORDER BY started_at DESC, id").fetchall()
    return [_summary(row) for row in rows]


def get_release(conn: Connection, release_id: UUID) -> ReleaseResponse | None:
    row = conn.execute("SELECT * FROM release_history WHERE id = %s", (release_id,)).fetchone()
    if row is None:
        return None
    # What was installed before: the latest earlier run that succeeded and carried an SBOM.
    before = conn.execute(
        "SELECT id, to_version, sbom FROM release_history WHERE started_at < %s AND outcome = 'succeeded'"
        " AND sbom IS NOT NULL ORDER BY started_at DESC LIMIT 1", (row["started_at"],)).fetchone()
    mine = components(row["sbom"])
    diff = sbom_diff(components(before["sbom"]) if before else [], mine)
    return ReleaseResponse(
        **_summary(row).model_dump(), manifest_sha256=row["manifest_sha256"], signers=row["signers"],
        plan=row["plan"], steps=row["steps"], log=row["log"], recorded_at=row["recorded_at"], components=mine,
        sbom_diff=SbomDiff(previous_id=str(before["id"]) if before else None,
                           previous_version=before["to_version"] if before else None, **diff))


def components(sbom: dict[str, Any] | None) -> list[Component]:
    """A CycloneDX document's top-level components by name (group/name when grouped) and version."""
    found: dict[str, Component] = {}
    for item in (sbom or {}).get("components") or []:
        if not isinstance(item, dict) or not item.get("name"):
            continue
        name = f"{item['group']}/{item['name']}" if item.get("group") else str(item["name"])
        found[name] = Component(name=name, version=str(item.get("version", "")))
    return sorted(found.values(), key=lambda c: c.name)


def sbom_diff(old: list[Component], new: list[Component]) -> dict[str, Any]:
    """Components added, removed and changed (same name, another version) from `old` to `new`."""
    before = {c.name: c for c in old}
    after = {c.name: c for c in new}
    return {
        "added": [after[name] for name in sorted(after.keys() - before.keys())],
        "removed": [before[name] for name in sorted(before.keys() - after.keys())],
        "changed": [ComponentChange(name=name, old_version=before[name].version, new_version=after[name].version)
                    for name in sorted(before.keys() & after.keys()) if before[name].version != after[name].version],
    }


def _summary(row: Row) -> ReleaseSummary:
    return ReleaseSummary(
        id=str(row["id"]), kind=row["kind"], from_version=row["from_version"], to_version=row["to_version"],
        outcome=row["outcome"], failed_step=row["failed_step"], actor=row["actor"], started_at=row["started_at"],
        finished_at=row["finished_at"], seconds=(row["finished_at"] - row["started_at"]).total_seconds())

