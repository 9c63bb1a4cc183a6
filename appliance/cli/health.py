"""`appliance health [--local] [--output json]`: the health report, exit code 0 ok, 1 warning, 2 error.

Without --local it asks the API (GET /api/v2/debug/health, owners and auditors). With --local it
builds the report in this process from the server configuration (APPLIANCE_CONFIG or --config), as
root on the appliance host: no login, no console, and it answers while PostgreSQL is down.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from appliance.cli.client import make_client
from appliance.cli.server import server_options
from appliance.config import load_server_config
from appliance.db.database import Database
from appliance.health.report import run_report
from appliance.sdk.health import HealthReport, Severity

_STYLE = {Severity.OK: "green", Severity.WARNING: "yellow", Severity.ERROR: "red"}
DB_POOL = 4  # checks read concurrently


@click.command()
@server_options
@click.option("--local", is_flag=True, help="Build the report here from the server config (root on the host), "
              "not through the API.")
@click.option("--output", "-o", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--url", "url", default=None, metavar="URL", help="Appliance URL [env APPLIANCE_URL].")
@click.option("--token", "token", default=None, metavar="TOKEN", help="Session or API token "
              "[env APPLIANCE_SESSION_TOKEN].")
@click.option("--ca-file", "ca_file", default=None, metavar="PEM", help="CA bundle that verifies an https URL.")
def health(local: bool, output: str, url: str | None, token: str | None, ca_file: str | None,
           **flags: Any) -> None:
    """Check every part of the appliance and say what to do about each problem."""
    report = _local(flags) if local else make_client(url, token, ca_file).call("GET", "/api/v2/debug/health",
                                                                               HealthReport)
    if output == "json":
        click.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        _print(report)
    sys.exit(report.severity.exit_code)


def _local(flags: dict[str, Any]) -> HealthReport:
    config = load_server_config(flags)
    db = Database(config.postgres_url, max_size=DB_POOL, timeout=3.0) if config.postgres_url else None
    try:
        return run_report(config, db)
    finally:
        if db is not None:
            db.close()


def _print(report: HealthReport) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in ("SECTION", "SEVERITY", "FINDINGS"):
        table.add_column(title, overflow="fold")
    for name, found in report.sections():
        lines = [f"{f.code}{' (dismissed)' if f.dismissed else ''}: {f.message}" for f in found.findings]
        table.add_row(name, f"[{_STYLE[found.severity]}]{found.severity.value}[/]", "\n".join(lines) or "-")
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)
    console.print(f"Appliance {report.appliance_version}: [{_STYLE[report.severity]}]{report.severity.value}[/]")
