"""Terraform's provider network mirror and registry protocols, served from the mirror tree.

Public, like any package mirror inside the site: provider binaries are not secrets, and
Terraform's network mirror client sends no credentials for archive downloads anyway.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request, send_file

from appliance.auth.web import server_config
from mirror.serve import resolve

terraform = Blueprint("terraform", __name__)


@terraform.get("/.well-known/terraform.json")
@terraform.get("/v1/providers/<path:rest>")
@terraform.get("/tf/mirror/<path:rest>")
def provider_file(rest: str = "") -> Response:
    found = resolve(server_config().mirror_dir, request.path)
    if found is None:
        abort(404)
    path, mimetype = found
    return send_file(path, mimetype=mimetype, conditional=True, max_age=300)
