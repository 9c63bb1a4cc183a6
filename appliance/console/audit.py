"""The audit log page: filters, pages of rows with their diffs, and a JSON-lines export link."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import request

from appliance.audit.search import AuditFilter, search_audit
from appliance.auth.rbac import Subject
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.errors import InvalidInput
from appliance.sdk.base import whole_number

PAGE_SIZE = 50
FILTER_FIELDS = ("username", "action", "resource_type", "since", "until")


def _time(name: str) -> datetime | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise InvalidInput(f"Invalid {name} time {value!r}: use a date and time such as "
                           "2026-01-31T14:00.", field=name) from err
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@bp.get("/audit")
@page()
def audit_log(conn: Connection, subject: Subject) -> Any:
    filters = {name: request.args.get(name, "").strip() for name in FILTER_FIELDS}
    offset = whole_number(request.args.get("offset", "0")) or 0  # a page past bigint is the first page
    flt = AuditFilter(username=filters["username"] or None, action=filters["action"] or None,
                      resource_type=filters["resource_type"] or None,
                      since=_time("since"), until=_time("until"))
    rows, count = search_audit(conn, subject, flt, limit=PAGE_SIZE, offset=offset)
    export_args = {k: v for k, v in filters.items() if v}
    return render("audit.html", rows=rows, count=count, filters=filters, offset=offset,
                  page_size=PAGE_SIZE, export_args=export_args)
