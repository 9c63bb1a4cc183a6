"""The images admin page: what the internal registry holds and which templates use each image."""

from __future__ import annotations

from typing import Any

from flask import current_app

from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.auth.web import server_config
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.pki.ca import CertificateAuthority
from appliance.registry import site
from appliance.templates import images


@bp.get("/admin/images")
@page()
def image_list(conn: Connection, subject: Subject) -> Any:
    authorize(subject, Action.UPDATE, Resource(ResourceType.IMAGE))
    config = server_config()
    ca: CertificateAuthority = current_app.extensions["appliance.ca"]
    listing = images.listing(site.catalog(config, ca, subject.username), site.advertised_host(config),
                             site.internal_hosts(config), images.usage(conn))
    return render("images.html", listing=listing)
