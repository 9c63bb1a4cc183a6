"""The health report (docs/health.md, docs/adr/0043): one module per check, report.py runs them all.

Each check module has one entry point, `async def check(ctx: HealthContext) -> HealthSection`, and
reports only codes listed for its section in appliance.sdk.health.CODES. A check never raises for
what it measures: a failure is a finding. report.py runs the checks concurrently, each under a
timeout, applies an owner's dismissals and assembles the HealthReport.
"""
