"""upgrade: was an upgrade, rollback or restore left unfinished, and is maintenance mode on (EUPG01, EUPG02)?"""

from __future__ import annotations

from typing import Any

from appliance import maintenance
from appliance.health.context import HealthContext, finding, section
from appliance.sdk.health import HealthFinding, HealthSection, Severity
from appliance.upgrades import read_installer_json

FINISHED = ("succeeded", "rolled-back", "failed")  # installer/journal.py's outcomes that end a journal


async def check(ctx: HealthContext) -> HealthSection:
    journal = read_installer_json(ctx.config.upgrade_journal)
    details: dict[str, Any] = {"journal": str(ctx.config.upgrade_journal)}
    findings: list[HealthFinding] = []
    if journal is not None:
        details.update({k: journal.get(k) for k in ("kind", "from_version", "to_version", "outcome", "finished_at")})
        if journal.get("outcome") not in FINISHED:
            findings.append(finding("EUPG01", Severity.ERROR, f"The {journal.get('kind', 'upgrade')} to "
                                    f"{journal.get('to_version')} started {journal.get('started_at')} was left "
                                    f"unfinished ({journal.get('outcome')}). If none is running, roll it back: "
                                    "sudo appliance-installer status (as root it recovers first)."))
    if ctx.has_database:
        state = await ctx.read(maintenance.status)
        details["maintenance"] = state.active
        if state.active:
            findings.append(finding("EUPG02", Severity.WARNING, f"Maintenance mode is on since {state.since} "
                                    f"({state.reason}): every change is refused. When no upgrade runs, turn it "
                                    "off: appliance maintenance leave."))
    return section(findings, **details)
