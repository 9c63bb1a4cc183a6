"""/api/v2/images: what the internal registry holds, and which templates use it (template admins, owners)."""

from __future__ import annotations

from flask import Response, current_app

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.spec import endpoint, json_response
from appliance.auth.rbac import Action, Resource, ResourceType, authorize
from appliance.auth.web import server_config
from appliance.pki.ca import CertificateAuthority
from appliance.registry import site
from appliance.sdk.images import ImageListResponse
from appliance.templates import images

TAG = "Images"


@endpoint(v2, "GET", "/images", summary="Repositories, tags, digests and sizes in the internal registry", tag=TAG,
          response=ImageListResponse)
def list_images() -> Response:
    with authenticated() as (conn, subject):
        # Those who may push images see what is stored; members pull by name.
        authorize(subject, Action.UPDATE, Resource(ResourceType.IMAGE))
        used = images.usage(conn)
    config = server_config()
    ca: CertificateAuthority = current_app.extensions["appliance.ca"]
    return json_response(images.listing(site.catalog(config, ca, subject.username), site.advertised_host(config),
                                        site.internal_hosts(config), used))
