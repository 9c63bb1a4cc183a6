"""The certificates admin page: CA fingerprint, root key location, every certificate's expiry."""

from __future__ import annotations

from typing import Any

from flask import current_app

from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.auth.web import server_config
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.pki.ca import CertificateAuthority
from appliance.pki.status import pki_status


@bp.get("/admin/certificates")
@page()
def certificates(conn: Connection, subject: Subject) -> Any:
    authorize(subject, Action.READ, Resource(ResourceType.DEPLOYMENT))
    ca: CertificateAuthority = current_app.extensions["appliance.ca"]
    report = pki_status(ca, server_config().cert_renew_within) if ca.is_initialised() else None
    return render("certificates.html", report=report, pki_dir=str(ca.root))
