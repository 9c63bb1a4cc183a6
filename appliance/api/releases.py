"""/api/v2/releases: the installer's receipts (owners and auditors), each with its SBOM diff."""

from __future__ import annotations

from uuid import UUID

from flask import Response

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.spec import endpoint, json_response
from appliance.auth.rbac import Action, Resource, ResourceType, authorize
from appliance.errors import NotFound
from appliance.releases import get_release, list_releases, version_floor
from appliance.sdk.releases import ReleaseListResponse, ReleaseResponse

TAG = "Releases"


@endpoint(v2, "GET", "/releases", summary="List installs, upgrades, rollbacks and restores (owner and auditor)",
          tag=TAG, response=ReleaseListResponse)
def release_list() -> Response:
    with authenticated() as (conn, subject):
        authorize(subject, Action.READ, Resource(ResourceType.RELEASE))
        return json_response(ReleaseListResponse(releases=list_releases(conn), floor=version_floor(conn)))


@endpoint(v2, "GET", "/releases/<release>", summary="One release's receipt, SBOM and diff against the one before",
          tag=TAG, response=ReleaseResponse, errors=(404,))
def release_detail(release: str) -> Response:
    with authenticated() as (conn, subject):
        authorize(subject, Action.READ, Resource(ResourceType.RELEASE))
        found = get_release(conn, _release_id(release))
    if found is None:
        raise NotFound(f"No release {release}.", "List them with GET /api/v2/releases.")
    return json_response(found)


def _release_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError as err:
        raise NotFound(f"No release {raw}.", "Release ids are UUIDs; list them with GET /api/v2/releases.") from err
