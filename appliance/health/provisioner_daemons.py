"""provisioner_daemons: has a daemon asked for work recently, and does each run this release (Coder's EPD01, EPD02)?"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from appliance import __version__
from appliance.db.database import Connection
from appliance.health.context import HealthContext, finding, section, skipped
from appliance.sdk.health import HealthFinding, HealthSection, Severity

RECENT_AT_LEAST = timedelta(minutes=2)  # a daemon asks for work every few seconds while idle


async def check(ctx: HealthContext) -> HealthSection:
    if not ctx.has_database:
        return skipped()
    recent = max(RECENT_AT_LEAST, 2 * ctx.config.provisioner_heartbeat_timeout)
    daemons = await ctx.read(lambda conn: _recent(conn, ctx.now - recent))
    details: dict[str, Any] = {"daemons": daemons, "seen_within_seconds": int(recent.total_seconds()),
                               "version": __version__}
    if not daemons:
        return section([finding("EPD01", Severity.ERROR, f"No provisioner daemon asked for work in the last "
                                f"{int(recent.total_seconds())} s: builds and template imports wait in the queue. "
                                "Start it: systemctl start appliance-provisioner; then read its journal.")], **details)
    findings: list[HealthFinding] = [
        finding("EPD02", Severity.WARNING, f"Provisioner daemon {d['name']} runs version {d['version']}, the "
                f"control plane {__version__}. Restart it so it runs this release.")
        for d in daemons if d["version"] and d["version"] != __version__]
    return section(findings, **details)


def _recent(conn: Connection, since: Any) -> list[dict[str, Any]]:
    """Each daemon name's latest session: a restart registers anew, and the session it replaced (the old
    release's, right after an upgrade) still looks recent for a while but runs nothing."""
    rows = conn.execute("SELECT DISTINCT ON (name) name, version, last_seen_at FROM provisioner_daemons"
                        " WHERE last_seen_at >= %s ORDER BY name, last_seen_at DESC", (since,)).fetchall()
    return [{"name": r["name"], "version": r["version"], "last_seen_at": r["last_seen_at"].isoformat()} for r in rows]
