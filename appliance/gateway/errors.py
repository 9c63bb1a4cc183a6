"""Every failure in the gateway becomes the API's JSON {"message", "detail"} with the right status."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from appliance.db.database import DatabaseUnavailable
from appliance.db.refusals import refused_value
from appliance.errors import InvalidInput, RequestError
from appliance.sdk.base import TEXT_HINT, unsafe_character

log = logging.getLogger("appliance.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str, detail: str, **extra: object) -> web.Response:
    return web.json_response({"message": message, "detail": detail, **extra}, status=status,
                             headers={"Cache-Control": "no-store"})


def refuse_unsafe_target(request: web.Request) -> None:
    """The API's rule (appliance/api/guard.py) for the gateway's own routes: no control character in the URL."""
    for where, field, value in (("path", "path", request.path),
                                *(("query", name, f"{name}={value}") for name, value in request.query.items())):
        if (bad := unsafe_character(value)) is not None:
            raise InvalidInput(f"The {where} holds the control character {bad}.", TEXT_HINT, field=field)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as err:
        extra = {"validations": [{"field": err.field, "detail": err.message}]} if err.field else {}
        return error_response(err.status, err.message, err.detail, **extra)
    except DatabaseUnavailable as err:
        log.error("database_unavailable", extra={"path": request.path})
        return error_response(503, err.message, err.hint)
    except ConnectionResetError:
        # The client went away mid-response (aiohttp's ClientConnectionResetError is one): nobody to answer.
        log.debug("client_gone", extra={"path": request.path})
        raise
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return error_response(err.status, f"No gateway endpoint {request.method} {request.path}.",
                              "The gateway serves log follows; everything else is the API's "
                              "(see /api/v2/openapi.json).")
    except Exception as err:
        if refusal := refused_value(err):
            return error_response(refusal.status, refusal.message, refusal.detail,
                                  validations=[{"field": refusal.field, "detail": refusal.message}])
        request_id = secrets.token_hex(8)
        log.exception("request_failed", extra={"path": request.path, "request_id": request_id})
        return error_response(500, "Internal server error.", f"Request id {request_id}; the gateway log has the cause.")
