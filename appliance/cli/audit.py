"""`appliance audit`: read the audit log, or stream all of it as JSON lines."""

from __future__ import annotations

import json

import click

from appliance.cli.client import ApiClient, with_client
from appliance.cli.output import Column, emit, when
from appliance.sdk.audit import AuditLogResponse, AuditPageResponse


def _diff(row: AuditLogResponse) -> str:
    return ", ".join(
        f"{k}: (secret)" if v.get("secret") else f"{k}: {v.get('old')!s:.20} -> {v.get('new')!s:.20}"
        for k, v in row.diff.items())


AUDIT_COLUMNS: list[Column] = [
    ("Time", lambda r: when(r.time)),
    ("User", lambda r: r.username),
    ("Action", lambda r: r.action),
    ("Resource", lambda r: f"{r.resource_type} {r.resource_target}".strip()),
    ("Status", lambda r: r.status_code),
    ("IP", lambda r: r.ip),
    ("Changes", _diff),
]


@click.command()
@click.option("--username", help="Only actions by this user.")
@click.option("--action", help="create, write, delete, login or logout.")
@click.option("--resource-type", help="user or api_key.")
@click.option("--since", help="From this ISO 8601 time.")
@click.option("--until", help="Before this ISO 8601 time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--output", "-o", type=click.Choice(["table", "json", "jsonl"]), default="table",
              show_default=True, help="jsonl streams every match, for a SIEM.")
@with_client
def audit(username: str | None, action: str | None, resource_type: str | None, since: str | None,
          until: str | None, limit: int, output: str, client: ApiClient) -> None:
    """Show the audit log, newest first (owners and auditors)."""
    params = {"username": username, "action": action, "resource_type": resource_type,
              "since": since, "until": until}
    if output == "jsonl":
        for line in client.stream_lines("/api/v2/audit/export", params):
            click.echo(line)
        return
    result = client.call("GET", "/api/v2/audit", AuditPageResponse, params={**params, "limit": limit})
    if output == "json":
        click.echo(json.dumps(result.model_dump(mode="json"), indent=2))
        return
    emit(result.audit_logs, AUDIT_COLUMNS, output)
    click.echo(f"{len(result.audit_logs)} of {result.count} shown.", err=True)
