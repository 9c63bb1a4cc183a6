"""`appliance maintenance enter|leave|status`: the switch the installer flips around an upgrade or restore.

Run as root by the installer with APPLIANCE_CONFIG set (like `appliance setup-link`): it talks to the
installed appliance's PostgreSQL directly, so it works while the console refuses every write.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import timedelta
from typing import Any

import click

from appliance import maintenance as state
from appliance.cli.admin import migrated_database
from appliance.cli.server import server_options
from appliance.sdk.base import unsafe_character
from appliance.sdk.releases import MaintenanceStatus
from operator_errors import OperatorError

_HINT = "Maintenance mode belongs to an installed appliance; the embedded quickstart has none."


def os_actor() -> str:
    """Who ran the command, as the audit log names them: the sudo user behind root when there is one."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user} (cli)"


@click.group()
def maintenance() -> None:
    """Refuse writes while the appliance is upgraded, rolled back or restored."""


@maintenance.command()
@server_options
@click.option("--reason", required=True, help="What is running, shown to users (e.g. 'upgrade to 1.5.0').")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Seconds to wait for running provisioner jobs before cancelling them.")
def enter(reason: str, drain_timeout: float, **flags: Any) -> None:
    """Turn maintenance on; returns once no write and no provisioner job is in flight (idempotent)."""
    if not reason.strip() or (bad := unsafe_character(reason)) or len(reason) > 200:
        raise OperatorError(f"--reason {reason!r} cannot be shown to users"
                            + (f": it holds {bad}." if reason.strip() and bad else "."),
                            "Give one line of up to 200 characters, e.g. --reason 'upgrade to 1.5.0'.")
    with migrated_database(flags, "appliance maintenance", _HINT) as db:
        entered = state.enter(db, reason.strip(), timedelta(seconds=drain_timeout), actor=os_actor())
    for job in entered.cancelled:
        click.echo(f"cancelled  {job}")
    click.echo(f"Maintenance is on since {_since(entered.status)}: {entered.status.reason}.")


@maintenance.command()
@server_options
def leave(**flags: Any) -> None:
    """Turn maintenance off (idempotent): writes and job claims resume."""
    with migrated_database(flags, "appliance maintenance", _HINT) as db:
        changed = state.leave(db, actor=os_actor())
    click.echo("Maintenance is off." if changed else "Maintenance was already off.")


@maintenance.command()
@server_options
@click.option("--output", "-o", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(output: str, **flags: Any) -> None:
    """Show whether maintenance is on, why and since when."""
    with migrated_database(flags, "appliance maintenance", _HINT) as db, db.reading() as conn:
        now = state.status(conn)
    if output == "json":
        click.echo(json.dumps(now.model_dump(mode="json")))
    elif now.active:
        click.echo(f"Maintenance is on since {_since(now)}: {now.reason}.")
    else:
        click.echo("Maintenance is off.")


def _since(status: MaintenanceStatus) -> str:
    return status.since.isoformat(timespec="seconds") if status.since else "?"
