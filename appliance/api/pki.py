"""/api/v2/pki: the trust bundle and CRL (public, so clients can bootstrap trust) and CA status."""

from __future__ import annotations

from flask import Response, current_app

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.spec import endpoint, json_response
from appliance.auth.rbac import Action, Resource, ResourceType, authorize
from appliance.auth.web import server_config
from appliance.errors import NotFound
from appliance.pki.ca import CertificateAuthority
from appliance.pki.status import pki_status
from appliance.sdk.pki import PkiStatusResponse

TAG = "PKI"
PEM = "application/x-pem-file"


def _ca() -> CertificateAuthority:
    ca: CertificateAuthority = current_app.extensions["appliance.ca"]
    if not ca.is_initialised():
        raise NotFound("This appliance has no internal CA yet.",
                       "It is created when 'appliance server' first starts, or by 'appliance pki init'.")
    return ca


@endpoint(v2, "GET", "/pki/ca.pem", summary="The CA bundle clients trust (root + intermediate)", tag=TAG,
          is_authenticated=False, errors=(404,), media_type=PEM)
def trust_bundle() -> Response:
    ca = _ca()
    return Response(ca.trust_bundle_pem(), mimetype=PEM,
                    headers={"X-Root-Fingerprint-SHA256": ca.root_fingerprint()})


@endpoint(v2, "GET", "/pki/crl.pem", summary="The certificate revocation list", tag=TAG,
          is_authenticated=False, errors=(404,), media_type=PEM)
def crl() -> Response:
    return Response(_ca().crl_pem(), mimetype=PEM)


@endpoint(v2, "GET", "/pki/status", summary="CA and certificate health (owners)", tag=TAG,
          response=PkiStatusResponse, errors=(404,))
def status() -> Response:
    with authenticated() as (_, subject):
        authorize(subject, Action.READ, Resource(ResourceType.DEPLOYMENT))
    return json_response(PkiStatusResponse.model_validate(pki_status(_ca(), server_config().cert_renew_within)))
