"""Read the audit log: filtered pages for the console and API, a stream of rows for a SIEM."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql

from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.db.database import Connection, Database, Row

_COLUMNS = ("id", "time", "user_id", "username", "action", "resource_type", "resource_id",
            "resource_target", "diff", "status_code", "ip", "user_agent", "request_id")
MAX_PAGE = 1000


@dataclass(frozen=True)
class AuditFilter:
    username: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        for column, value in (("action", self.action), ("resource_type", self.resource_type),
                              ("resource_id", self.resource_id)):
            if value:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if self.username:
            clauses.append(sql.SQL("lower(username) = lower(%s)"))
            params.append(self.username)
        if self.since:
            clauses.append(sql.SQL("time >= %s"))
            params.append(self.since)
        if self.until:
            clauses.append(sql.SQL("time < %s"))
            params.append(self.until)
        if not clauses:
            return sql.SQL(""), params
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses), params


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as read back: who did what to which resource, with the change and where from."""

    id: UUID
    time: datetime
    user_id: UUID | None
    username: str
    action: str
    resource_type: str
    resource_id: str
    resource_target: str
    diff: dict[str, Any]
    status_code: int
    ip: str | None
    user_agent: str
    request_id: str

    @classmethod
    def from_row(cls, row: Row) -> AuditEntry:
        return cls(**{**{k: row[k] for k in _COLUMNS}, "ip": str(row["ip"]) if row["ip"] else None})


def _select(where: sql.Composable) -> sql.Composed:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS)
    return sql.SQL("SELECT {} FROM audit_logs{} ORDER BY time DESC, id DESC").format(columns, where)


def search_audit(
    conn: Connection, actor: Subject, flt: AuditFilter, *, limit: int, offset: int
) -> tuple[list[AuditEntry], int]:
    authorize(actor, Action.READ, Resource(ResourceType.AUDIT_LOG))
    where, params = flt.where()
    count_row = conn.execute(sql.SQL("SELECT count(*) AS n FROM audit_logs{}").format(where), params).fetchone()
    query = _select(where) + sql.SQL(" LIMIT %s OFFSET %s")
    rows = conn.execute(query, [*params, min(limit, MAX_PAGE), offset]).fetchall()
    return [AuditEntry.from_row(r) for r in rows], int(count_row["n"]) if count_row else 0


def stream_audit(db: Database, actor: Subject, flt: AuditFilter) -> Iterator[AuditEntry]:
    """Every matching row, newest first, read through a server-side cursor in constant memory.

    The permission check runs now, before the caller starts a streamed response.
    """
    authorize(actor, Action.READ, Resource(ResourceType.AUDIT_LOG))
    where, params = flt.where()

    def rows() -> Iterator[AuditEntry]:
        with db.transaction() as conn, conn.cursor(name="audit_export") as cursor:
            cursor.itersize = 500
            cursor.execute(_select(where), params)
            for row in cursor:
                yield AuditEntry.from_row(row)

    return rows()
