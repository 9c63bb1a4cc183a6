"""`appliance doctor`: find podman containers and volumes left behind by workspaces that no longer exist."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from appliance.cli.output import emit, output_option
from appliance.cli.server import server_options
from appliance.config import ServerConfig, load_server_config
from appliance.db.database import Database
from appliance.db.embedded import EmbeddedPostgres
from appliance.logs import configure_logging
from appliance.runtime.podman import Owned, Podman, PodmanFailed, find_podman, list_owned
from appliance.workspaces.service import live_workspace_ids

_COLUMNS = [("KIND", lambda o: o.kind), ("NAME", lambda o: o.podman_name),
            ("WORKSPACE", lambda o: o.workspace_id), ("STATUS", lambda o: o.status)]


@click.command()
@server_options
@click.option("--fix", is_flag=True, help="Remove what is found (containers first, then volumes).")
@output_option
def doctor(fix: bool, output: str, **flags: Any) -> None:
    """List workspace containers and volumes whose workspace is deleted or unknown; remove them with --fix."""
    config = load_server_config(flags)
    configure_logging(config.log_format, "warning")
    podman = find_podman(config.runtime_socket.parent)
    owned = list_owned(podman)
    with _database(config) as db, db.transaction() as conn:
        live = live_workspace_ids(conn, {item.workspace_id for item in owned})
    orphans = sorted((item for item in owned if item.workspace_id not in live),
                     key=lambda item: (item.kind != "container", item.podman_name))
    rows = [_Row(item, _remove(podman, item) if fix else "orphaned") for item in orphans]
    emit(rows, _COLUMNS, output, raw=[row.as_dict() for row in rows])
    if output != "json":
        click.echo(_summary(rows, fix), err=True)
    if any(row.status.startswith("failed") for row in rows):
        raise SystemExit(1)


class _Row:
    def __init__(self, item: Owned, status: str) -> None:
        self.kind, self.podman_name, self.workspace_id, self.status = (item.kind, item.podman_name,
                                                                       item.workspace_id, status)

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.podman_name, "workspace_id": self.workspace_id,
                "status": self.status}


def _remove(podman: Podman, item: Owned) -> str:
    command = (["rm", "--force", "--ignore", item.podman_name] if item.kind == "container"
               else ["volume", "rm", "--force", item.podman_name])
    try:
        podman.run_sync(*command)
    except PodmanFailed as err:
        return f"failed: {err.last_lines(2)}"
    return "removed"


def _summary(rows: list[_Row], fix: bool) -> str:
    if not rows:
        return "Nothing left behind: every workspace container and volume belongs to a live workspace."
    if fix:
        removed = sum(row.status == "removed" for row in rows)
        return f"Removed {removed} of {len(rows)}."
    return f"{len(rows)} left behind by deleted or unknown workspaces. Run 'appliance doctor --fix' to remove them."


@contextmanager
def _database(config: ServerConfig) -> Iterator[Database]:
    """The appliance's database: its URL, or the embedded cluster (the running server's, or started for now)."""
    embedded = None
    conninfo = config.postgres_url
    if conninfo is None:
        embedded = EmbeddedPostgres(config.data_dir / "postgres")
        if embedded.is_running():
            conninfo, embedded = embedded.conninfo(), None
        else:
            conninfo = embedded.start()
    db = Database(conninfo, max_size=1)
    try:
        yield db
    finally:
        db.close()
        if embedded is not None:
            embedded.stop()
