"""/api/v2/users/{user}/keys: API tokens, shown once at creation and stored only as a hash."""

from __future__ import annotations

from flask import Response

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.spec import endpoint, json_response
from appliance.auth import apikeys
from appliance.auth.web import request_info, server_config
from appliance.config import parse_duration
from appliance.errors import InvalidInput
from appliance.responses import token_response
from appliance.sdk.meta import MessageResponse
from appliance.sdk.tokens import CreateTokenRequest, TokenCreatedResponse, TokenListResponse

TAG = "Tokens"


@endpoint(v2, "POST", "/users/<user>/keys/tokens", summary="Create an API token", tag=TAG,
          body=CreateTokenRequest, response=TokenCreatedResponse, status=201, errors=(404, 409))
def create_token(user: str, body: CreateTokenRequest) -> Response:
    try:
        lifetime = parse_duration(body.lifetime) if body.lifetime is not None else None
    except ValueError as err:
        raise InvalidInput(f"Invalid field 'lifetime': {err}.", apikeys.LIFETIME_HINT, field="lifetime") from err
    with authenticated() as (conn, subject):
        token, key = apikeys.create_token(conn, subject, user, name=body.token_name, lifetime=lifetime,
                                          max_lifetime=server_config().max_token_lifetime,
                                          info=request_info(), scope=body.scope)
    return json_response(TokenCreatedResponse(key=token, token=token_response(key)), 201)


@endpoint(v2, "GET", "/users/<user>/keys/tokens", summary="List active API tokens", tag=TAG,
          response=TokenListResponse, errors=(404,))
def list_tokens(user: str) -> Response:
    with authenticated() as (conn, subject):
        found = apikeys.list_tokens(conn, subject, user)
    return json_response(TokenListResponse(tokens=[token_response(k) for k in found]))


@endpoint(v2, "DELETE", "/users/<user>/keys/<key_id>", summary="Revoke an API token", tag=TAG,
          response=MessageResponse, errors=(404,))
def revoke_token(user: str, key_id: str) -> Response:
    with authenticated() as (conn, subject):
        apikeys.revoke_token(conn, subject, user, key_id, request_info())
    return json_response(MessageResponse(message=f"Token {key_id} revoked."))
