"""GET /api/v2/metrics: Prometheus' scrape, for a token of scope 'metrics' held by an owner or auditor."""

from __future__ import annotations

from flask import Response, current_app

from appliance.api.blueprints import v2
from appliance.api.spec import endpoint
from appliance.auth.apikeys import METRICS_SCOPE
from appliance.auth.rbac import Action, Resource, ResourceType, is_allowed
from appliance.auth.web import current_auth, database, server_config
from appliance.errors import Forbidden, Unauthorized
from appliance.metrics.scrape import CONTENT_TYPE, render

CREATE_HINT = (f"Create one as an owner or auditor: 'appliance tokens create prometheus --scope {METRICS_SCOPE}', "
               "and give it to Prometheus as its bearer token (authorization.credentials).")


@endpoint(v2, "GET", "/metrics", summary="Prometheus metrics (a token of scope 'metrics' of an owner or auditor)",
          tag="Metrics", media_type="text/plain")
def metrics() -> Response:
    with database().reading() as conn:
        auth = current_auth(conn, scope=METRICS_SCOPE)
    if auth is None:
        raise Unauthorized(f"Metrics need a bearer token of scope '{METRICS_SCOPE}'.", CREATE_HINT)
    if not is_allowed(auth.subject, Action.READ, Resource(ResourceType.METRICS)):
        raise Forbidden(f"{auth.user.username} may not read metrics: only owners and auditors may.",
                        "Ask an owner for the auditor role, or use a metrics token of an owner or auditor.")
    body = render(server_config(), database(), current_app.extensions["appliance.ca"])
    return Response(body, content_type=CONTENT_TYPE)
