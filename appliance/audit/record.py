"""Write audit rows inside the same transaction as the change they describe."""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from appliance.auth.rbac import Subject
from appliance.db.database import Connection

SECRET_FIELDS = frozenset({"hashed_password", "password", "hashed_secret", "token", "secret"})


@dataclass(frozen=True)
class RequestInfo:
    """Where a request came from, as the audit log records it."""

    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""


SYSTEM = RequestInfo(user_agent="appliance (system)")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(_plain(v) for v in value) if isinstance(value, (set, frozenset)) else [_plain(v) for v in value]
    return value


def diff_fields(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    secret: Set[str] = SECRET_FIELDS,
) -> dict[str, dict[str, Any]]:
    """Changed fields as {"field": {"old", "new", "secret"}}; secret values are never written."""
    changed: dict[str, dict[str, Any]] = {}
    for key in sorted(set(old) | set(new)):
        before, after = _plain(old.get(key)), _plain(new.get(key))
        if before == after:
            continue
        if key in secret:
            changed[key] = {"old": "", "new": "", "secret": True}
        else:
            changed[key] = {"old": before, "new": after, "secret": False}
    return changed


def record(
    conn: Connection,
    *,
    actor: Subject | None,
    action: str,
    resource_type: str,
    resource_id: object = "",
    target: str = "",
    diff: Mapping[str, Any] | None = None,
    status: int = 200,
    info: RequestInfo = SYSTEM,
    actor_name: str | None = None,
    actor_id: UUID | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit_logs (user_id, username, action, resource_type, resource_id,"
        " resource_target, diff, status_code, ip, user_agent, request_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            actor.user_id if actor else actor_id,
            actor.username if actor else (actor_name or "")[:64],
            action,
            resource_type,
            str(resource_id),
            target[:256],
            json.dumps(dict(diff or {})),
            status,
            info.ip,
            info.user_agent[:512],
            info.request_id[:64],
        ),
    )
