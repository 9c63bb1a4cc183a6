"""The web console: server-rendered pages over the same services as the API, no external assets."""

from flask import Flask

from appliance.console import (  # noqa: F401 -- importing registers the pages
    account,
    agents,
    audit,
    health,
    images,
    pki,
    providers,
    releases,
    session,
    templates_pages,
    terminal,
    upgrades,
    users,
    workspaces,
)
from appliance.console.blueprint import bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
