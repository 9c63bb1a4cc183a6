"""The Releases page: every install, upgrade, rollback and restore, with its receipt and SBOM diff."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.errors import NotFound
from appliance.releases import get_release, list_releases, version_floor


@bp.get("/releases")
@page()
def release_list(conn: Connection, subject: Subject) -> Any:
    authorize(subject, Action.READ, Resource(ResourceType.RELEASE))
    return render("releases.html", releases=list_releases(conn), floor=version_floor(conn))


@bp.get("/releases/<release_id>")
@page()
def release_detail(conn: Connection, subject: Subject, release_id: str) -> Any:
    authorize(subject, Action.READ, Resource(ResourceType.RELEASE))
    try:
        found = get_release(conn, UUID(release_id))
    except ValueError:
        found = None
    if found is None:
        raise NotFound(f"There is no release {release_id}.", "Pick one from the Releases page.")
    return render("release_detail.html", release=found)
