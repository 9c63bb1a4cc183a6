"""Every failure under /api/ becomes JSON {"message", "detail"} with the right status, never a trace."""

from __future__ import annotations

import json
import logging

from flask import Response, g, request
from werkzeug.exceptions import HTTPException

from appliance.db.database import DatabaseUnavailable
from appliance.db.refusals import refused_value
from appliance.errors import RequestError, Throttled

log = logging.getLogger(__name__)


MACHINE_PREFIXES = ("/api/", "/v1/providers/", "/tf/mirror/", "/.well-known/")


def is_api_request() -> bool:
    """Requests from programs (API clients, Terraform) get JSON errors, never console pages."""
    return request.path.startswith(MACHINE_PREFIXES) or request.path == "/healthz"


def error_response(body: dict[str, object], status: int) -> Response:
    """The error shape OpenAPI documents as Error ({"message", "detail", "validations"})."""
    return Response(json.dumps(body), status=status, mimetype="application/json")


def request_error_response(err: RequestError) -> Response:
    body: dict[str, object] = {"message": err.message, "detail": err.detail}
    validations = getattr(err, "validations", None)
    if validations:
        body["validations"] = validations
    elif err.field:
        body["validations"] = [{"field": err.field, "detail": err.message}]
    response = error_response(body, err.status)
    if isinstance(err, Throttled):
        response.headers["Retry-After"] = str(err.retry_after)
    return response


def http_error_response(err: HTTPException) -> Response:
    if err.code == 404 and not request.path.startswith("/api/"):
        message, detail = f"Nothing at {request.path}.", "The provider mirror has no such document or archive."
    elif err.code == 404:
        message, detail = f"No API endpoint {request.method} {request.path}.", "See /api/v2/openapi.json."
    elif err.code == 405:
        message = f"Method {request.method} is not allowed on {request.path}."
        detail = f"Allowed: {', '.join(sorted(err.valid_methods or []))}."  # type: ignore[attr-defined]
    else:
        message, detail = err.name, err.description or ""
    return error_response({"message": message, "detail": detail}, err.code or 500)


def unavailable_response(err: DatabaseUnavailable) -> Response:
    log.error("database_unavailable", extra={"path": request.path, "request_id": g.get("request_id")})
    return error_response({"message": err.message, "detail": err.hint}, 503)


def internal_error_response(err: Exception) -> Response:
    request_id = g.get("request_id", "")
    log.exception("request_failed", extra={"path": request.path, "request_id": request_id},
                  exc_info=err)
    return error_response({"message": "Internal server error.",
                          "detail": f"Request id {request_id}; the server log has the cause."}, 500)


def api_error_response(err: Exception) -> Response:
    if isinstance(err, RequestError):
        return request_error_response(err)
    if isinstance(err, HTTPException):
        return http_error_response(err)
    if isinstance(err, DatabaseUnavailable):
        return unavailable_response(err)
    if refusal := refused_value(err):
        return request_error_response(refusal)
    return internal_error_response(err)
