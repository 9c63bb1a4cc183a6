"""Run every check concurrently, each under a timeout, and assemble one HealthReport.

The database check runs first (a couple of seconds at most): when PostgreSQL is down, the checks
that read it say so and skip, instead of each waiting out the pool. A check that raises or hangs
becomes an error finding of its own section; the report itself always answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from appliance import __version__
from appliance.config import ServerConfig
from appliance.db.database import Database
from appliance.health import (
    access_url,
    backups,
    bundle,
    certificates,
    database,
    derp,
    disk,
    dismissals,
    mirror,
    provisioner_daemons,
    registry,
    upgrade,
    websocket,
)
from appliance.health.context import HealthContext, finding, section
from appliance.sdk.health import SECTIONS, HealthReport, HealthSection, Severity, worst

log = logging.getLogger("appliance.health")

Check = Callable[[HealthContext], Awaitable[HealthSection]]
CHECK_TIMEOUT = 15.0  # seconds; each check's own network timeouts are shorter
THREADS = 8
CHECKS: dict[str, Check] = {
    "access_url": access_url.check, "derp": derp.check, "websocket": websocket.check,
    "provisioner_daemons": provisioner_daemons.check, "certificates": certificates.check, "backups": backups.check,
    "disk": disk.check, "bundle": bundle.check, "mirror": mirror.check, "registry": registry.check,
    "upgrade": upgrade.check,
}
# The code a section reports when its check itself failed or did not finish in time.
FAILED = {"access_url": "EACS02", "database": "EDB01", "derp": "EDERP02", "websocket": "EWS01",
          "provisioner_daemons": "EPD01", "certificates": "ECERT02", "backups": "EBAK02", "disk": "EDISK01",
          "bundle": "EBUN02", "mirror": "EMIR01", "registry": "EREG01", "upgrade": "EUPG01"}


def run_report(config: ServerConfig, db: Database | None) -> HealthReport:
    """The report, from synchronous code (a Flask view, the CLI).

    Its own loop and threads: a check stuck in a thread past its timeout is abandoned, never waited for.
    """
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(THREADS, thread_name_prefix="health")
    loop.set_default_executor(executor)
    try:
        return loop.run_until_complete(build_report(HealthContext(config, db)))
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        loop.close()


async def build_report(ctx: HealthContext) -> HealthReport:
    sections = {"database": await _run("database", database.check, ctx)}
    results = await asyncio.gather(*(_run(name, check, ctx) for name, check in CHECKS.items()))
    sections.update(zip(CHECKS, results, strict=True))
    dismissed = await _dismissed(ctx)
    sections = {name: _apply(sections[name], dismissed) for name in SECTIONS}
    severity = worst([s.severity for s in sections.values()])
    return HealthReport(time=ctx.now, healthy=severity is not Severity.ERROR, severity=severity,
                        appliance_version=__version__, **sections)


async def _run(name: str, check: Check, ctx: HealthContext) -> HealthSection:
    try:
        return await asyncio.wait_for(check(ctx), CHECK_TIMEOUT)
    except TimeoutError:
        message = f"The {name} check did not finish within {CHECK_TIMEOUT:g} s. Run it again; if it persists, " \
                  "read the journal of the component it checks."
    except Exception as err:  # a bug or an unforeseen failure: reported, never a 500
        log.warning("health_check_failed", extra={"section": name, "error": str(err)})
        message = f"The {name} check failed: {type(err).__name__}: {str(err)[:300]}. Read the component's journal."
    if name == "database":
        ctx.database_up = False
    return section([finding(FAILED[name], Severity.ERROR, message)])


async def _dismissed(ctx: HealthContext) -> set[str]:
    if not ctx.has_database:
        return set()
    try:
        return set(await asyncio.wait_for(ctx.read(dismissals.dismissed_codes), CHECK_TIMEOUT))
    except Exception as err:  # the database went away meanwhile: nothing dismissed
        log.warning("health_dismissals_unread", extra={"error": str(err)})
        return set()


def _apply(found: HealthSection, dismissed: set[str]) -> HealthSection:
    if not dismissed or not found.findings:
        return found
    findings = [f.model_copy(update={"dismissed": f.code in dismissed}) for f in found.findings]
    return section(findings, **found.details)
