"""/api/v2/registry/token: Docker registry tokens for the internal registry (docs/adr/0017).

Clients authenticate with Basic (a username and an API token or password: what `docker login`
sends) or a Bearer session; anonymous callers get 401 and the Bearer challenge that says where
to come back, as the token spec asks. The runtime service pulls for a workspace build as user
`workspace` with the build's runtime credential as password: pull only (docs/adr/0019).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from flask import Response, current_app, request

from appliance.api.blueprints import v2
from appliance.api.errors import request_error_response
from appliance.api.spec import endpoint, json_response
from appliance.auth.login import authenticate_basic
from appliance.auth.rbac import Subject
from appliance.auth.web import database, request_info, require_subject, server_config
from appliance.errors import InvalidInput, Unauthorized
from appliance.pki.ca import CertificateAuthority
from appliance.registry import scopes, tokens
from appliance.runtime import credentials
from appliance.sdk.registry import RegistryTokenQuery, RegistryTokenResponse

TAG = "Registry"
WORKSPACE_LOGIN = "workspace"  # Basic username the runtime service pulls as, with a build credential
_WORKSPACE_USER_ID = uuid.UUID(int=0)  # no user stands behind a workspace build's subject


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        login, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise Unauthorized("Malformed Basic credentials.", "Send base64 of 'username:token'.") from err
    if not sep or not login or not secret:
        raise Unauthorized("Basic credentials need a username and a token or password.",
                           "Log in with 'podman login' or 'docker login' and both.")
    return login, secret


def _is_build_credential(login: str, secret: str) -> bool:
    """A JWT under the reserved login: what the runtime service sends; a user named 'workspace' still logs in."""
    return login == WORKSPACE_LOGIN and secret.count(".") == 2


def _workspace_subject(secret: str) -> Subject:
    """A workspace build pulling its image: a member-like subject with no user behind it (pull only, below)."""
    ca: CertificateAuthority = current_app.extensions["appliance.ca"]
    try:
        build = credentials.verify(secret, credentials.load_roots(ca.layout.root_cert.read_bytes()), datetime.now(UTC))
    except credentials.CredentialRefused as err:
        raise Unauthorized(f"The workspace build credential was refused: {err}.",
                           "Only a running workspace build's credential pulls as 'workspace'.") from err
    return Subject.of(_WORKSPACE_USER_ID, f"workspace-{build.workspace_id}", [])


def _subject() -> Subject:
    basic = _basic_credentials(request.headers.get("Authorization", ""))
    if basic is not None:
        if _is_build_credential(*basic):
            return _workspace_subject(basic[1])
        return authenticate_basic(database(), *basic, request_info())
    with database().reading() as conn:
        return require_subject(conn)


@endpoint(v2, "GET", "/registry/token", summary="Issue a token for the internal registry (Docker token spec)",
          tag=TAG, query=RegistryTokenQuery, response=RegistryTokenResponse, errors=(429, 503))
def registry_token(query: RegistryTokenQuery) -> Response:
    if query.service != tokens.SERVICE:
        raise InvalidInput(f"Unknown registry service {query.service!r}.",
                           f"This appliance issues tokens for {tokens.SERVICE!r}.", field="service")
    requested = scopes.parse_scopes(request.args.getlist("scope"))
    try:
        subject = _subject()
    except Unauthorized as err:
        response = request_error_response(err)
        response.headers["WWW-Authenticate"] = tokens.challenge(server_config().access_url)
        return response
    granted = scopes.grant(subject, requested)
    if subject.user_id == _WORKSPACE_USER_ID:  # a workspace build: pull, whatever its subject's roles would allow
        granted = [scopes.Access(a.type, a.name, (scopes.PULL,)) for a in granted if scopes.PULL in a.actions]
    ca: CertificateAuthority = current_app.extensions["appliance.ca"]
    issued = tokens.issue_token(tokens.load_signer(ca), subject, granted, datetime.now(UTC))
    return json_response(RegistryTokenResponse(token=issued.token, access_token=issued.token,
                                               expires_in=issued.expires_in, issued_at=issued.issued_at))
