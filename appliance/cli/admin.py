"""`appliance migrate`: bring the database schema up to date."""

from __future__ import annotations

from typing import Any

import click

from appliance.cli.server import server_options
from appliance.config import load_server_config
from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations, pending_migrations
from appliance.logs import configure_logging


@click.command()
@server_options
@click.option("--dry-run", is_flag=True, help="List pending migrations without applying them.")
def migrate(dry_run: bool, **flags: Any) -> None:
    """Apply pending database migrations (safe to run twice: the second run does nothing)."""
    config = load_server_config(flags)
    configure_logging(config.log_format, "warning")
    embedded = None
    conninfo = config.postgres_url
    try:
        if conninfo is None:
            embedded = EmbeddedPostgres(config.data_dir / "postgres")
            conninfo = embedded.start()
        if dry_run:
            pending = pending_migrations(conninfo)
            for m in pending:
                click.echo(f"pending  {m.version:06d}_{m.name}")
            click.echo(f"{len(pending)} migration(s) pending.")
            return
        applied = apply_migrations(conninfo)
        for m in applied:
            click.echo(f"applied  {m.version:06d}_{m.name}")
        click.echo("Schema is up to date." if not applied else f"{len(applied)} migration(s) applied.")
    finally:
        if embedded is not None:
            embedded.stop()
