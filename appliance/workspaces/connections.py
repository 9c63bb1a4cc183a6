"""The connection audit: the sessions clients opened to a workspace's agents (rows from pairing and the relay)."""

from __future__ import annotations

from appliance.auth.rbac import Subject
from appliance.db.database import Connection, Row
from appliance.sdk.workspaces import ConnectionState
from appliance.workspaces.service import find_workspace


def state(row: Row) -> ConnectionState:
    if row["connected_at"] is None:
        return "paired"
    if row["ended_at"] is None:
        return "connected"
    return "unknown end" if row["bytes_to_agent"] is None else "ended"


def list_connections(conn: Connection, subject: Subject, workspace_ref: str, limit: int = 100) -> list[Row]:
    """The newest first; whoever may not read the workspace gets its 404."""
    workspace = find_workspace(conn, subject, workspace_ref, include_deleted=True)
    return conn.execute("SELECT * FROM workspace_connections WHERE workspace_id = %s"
                        " ORDER BY created_at DESC, id LIMIT %s", (workspace.id, limit)).fetchall()
