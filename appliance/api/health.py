"""/api/v2/debug/health: the health report (owners, auditors) and its dismissals (owners change them).

The report must answer while PostgreSQL is down: the caller is authenticated from this process's
token cache when it can be (a token verified in the last seconds costs no connection, ADR 0041), and
no pooled connection is held while the checks run, so the database check reports EDB01 itself.
"""

from __future__ import annotations

from flask import Response

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.spec import endpoint, json_response
from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.auth.web import cached_auth, database, request_info, server_config
from appliance.health import dismissals
from appliance.health.report import run_report
from appliance.sdk.health import HealthReport, HealthSettings, HealthSettingsRequest

TAG = "Health"


@endpoint(v2, "GET", "/debug/health", summary="The health report: every section, its severity and findings "
          "(owner and auditor)", tag=TAG, response=HealthReport)
def health_report() -> Response:
    authorize(_caller(), Action.READ, Resource(ResourceType.HEALTH))
    return json_response(run_report(server_config(), database()))


@endpoint(v2, "GET", "/debug/health/settings", summary="The codes an owner dismissed (owner and auditor)", tag=TAG,
          response=HealthSettings)
def health_settings() -> Response:
    with authenticated() as (conn, subject):
        authorize(subject, Action.READ, Resource(ResourceType.HEALTH))
        return json_response(HealthSettings(dismissed_codes=dismissals.dismissed_codes(conn)))


@endpoint(v2, "PUT", "/debug/health/settings", summary="Replace the dismissed codes (owner)", tag=TAG,
          body=HealthSettingsRequest, response=HealthSettings)
def update_health_settings(body: HealthSettingsRequest) -> Response:
    with authenticated() as (conn, subject):
        return json_response(dismissals.save(conn, subject, list(body.dismissed_codes), request_info()))


def _caller() -> Subject:
    """The caller from the token cache, else from one connection released before the checks run."""
    cached = cached_auth()
    if cached is not None:
        return cached.subject
    with authenticated() as (_, subject):
        return subject
