"""`appliance migrate` and `appliance setup-link`: operator commands that talk to the database directly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import psycopg

from appliance.auth.setup_tokens import create_setup_token
from appliance.cli.server import server_options
from appliance.config import ServerConfig, load_server_config, parse_duration
from appliance.db.database import Database
from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations, pending_migrations
from appliance.errors import OperatorError, RequestError
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


def installed_database(config: ServerConfig, command: str, hint: str) -> Database:
    """A one-connection pool on the installed appliance's database (postgres_url in the config)."""
    if config.postgres_url is None:
        raise OperatorError(f"{command} needs postgres_url (an installed appliance).", hint)
    return Database(config.postgres_url, max_size=1)


@contextmanager
def migrated_database(flags: dict[str, Any], command: str, hint: str) -> Iterator[Database]:
    """installed_database for a command that needs the current schema: a clear error on an older one."""
    db = installed_database(load_server_config(flags), command, hint)
    try:
        yield db
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as err:
        raise OperatorError(f"{command} needs a newer database schema than this one ({err.diag.message_primary}).",
                            "Apply the pending migrations with `appliance migrate`, then run it again.") from err
    finally:
        db.close()


@click.command("setup-link")
@server_options
@click.option("--lifetime", default="24h", show_default=True, help="How long the link stays valid.")
def setup_link(lifetime: str, **flags: Any) -> None:
    """Print a one-time link that creates the first (owner) user; older links stop working."""
    config = load_server_config(flags)
    db = installed_database(config, "setup-link",
                            "The embedded quickstart needs no link: open /setup on the loopback URL.")
    try:
        with db.transaction() as conn:
            token = create_setup_token(conn, parse_duration(lifetime))
    except RequestError as err:
        raise OperatorError(err.message, err.detail) from err
    finally:
        db.close()
    click.echo(f"{config.access_url}/setup?token={token}")
