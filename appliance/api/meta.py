"""Health, build information and the OpenAPI document."""

from __future__ import annotations

import json

from flask import Response

from appliance import buildinfo
from appliance.api.blueprints import root, v2
from appliance.api.spec import endpoint, json_response, openapi_document
from appliance.auth.web import database, server_config
from appliance.sdk.meta import BuildInfoResponse

TAG = "Meta"


@endpoint(root, "GET", "/healthz", summary="Answer OK when the database answers", tag=TAG,
          is_authenticated=False, errors=(503,), media_type="text/plain")
def healthz() -> Response:
    if database().ping():
        return Response("OK", mimetype="text/plain")
    return Response("database unavailable", status=503, mimetype="text/plain")


@endpoint(v2, "GET", "/buildinfo", summary="Version and source commit of this release", tag=TAG,
          response=BuildInfoResponse, is_authenticated=False)
def get_buildinfo() -> Response:
    return json_response(BuildInfoResponse(version=buildinfo.version(), commit=buildinfo.commit(),
                                           dashboard_url=server_config().access_url))


@endpoint(v2, "GET", "/openapi.json", summary="This API's OpenAPI 3 document", tag=TAG,
          is_authenticated=False)
def openapi() -> Response:
    return Response(json.dumps(openapi_document()), mimetype="application/json")
