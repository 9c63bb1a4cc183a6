"""/api/v2/audit: search the audit log, or export it as JSON lines for a SIEM."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Response, stream_with_context

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.spec import endpoint, json_response
from appliance.audit.search import AuditFilter, search_audit, stream_audit
from appliance.auth.web import database
from appliance.responses import audit_log_response
from appliance.sdk.audit import AuditExportQuery, AuditPageResponse, AuditQuery

TAG = "Audit"


def _filter(query: AuditExportQuery) -> AuditFilter:
    return AuditFilter(username=query.username, action=query.action,
                       resource_type=query.resource_type, resource_id=query.resource_id,
                       since=query.since, until=query.until)


@endpoint(v2, "GET", "/audit", summary="Search the audit log (owner and auditor)", tag=TAG,
          query=AuditQuery, response=AuditPageResponse)
def search(query: AuditQuery) -> Response:
    with authenticated() as (conn, subject):
        rows, count = search_audit(conn, subject, _filter(query), limit=query.limit,
                                   offset=query.offset)
    return json_response(AuditPageResponse(audit_logs=[audit_log_response(r) for r in rows], count=count))


@endpoint(v2, "GET", "/audit/export", summary="Stream the audit log as JSON lines", tag=TAG,
          query=AuditExportQuery, media_type="application/x-ndjson")
def export(query: AuditExportQuery) -> Response:
    with authenticated() as (_, subject):
        rows = stream_audit(database(), subject, _filter(query))

    def lines() -> Iterator[str]:
        for row in rows:
            yield json.dumps(audit_log_response(row).model_dump(mode="json")) + "\n"

    return Response(stream_with_context(lines()), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": "attachment; filename=audit.jsonl"})
