"""The Providers page: what the mirror holds, where Terraform finds it, and the CLI config to use."""

from __future__ import annotations

from typing import Any

from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.auth.web import server_config
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from mirror.cliconfig import registry_host, terraform_cli_config
from mirror.inventory import entries
from mirror.layout import MIRROR_URL_PATH


@bp.get("/providers")
@page()
def providers(conn: Connection, subject: Subject) -> Any:
    authorize(subject, Action.READ, Resource(ResourceType.TEMPLATE))
    config = server_config()
    found = entries(config.mirror_dir) if config.mirror_dir.is_dir() else []
    return render("providers.html", entries=found, mirror_url=config.access_url + MIRROR_URL_PATH,
                  registry_host=registry_host(config.access_url), cli_config=terraform_cli_config(config.access_url),
                  ca_url=config.access_url + "/api/v2/pki/ca.pem")
