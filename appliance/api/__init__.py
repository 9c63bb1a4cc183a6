"""The REST API under /api/v2: JSON in, JSON out, errors as {"message", "detail"}."""

from flask import Flask

from appliance.api import (  # noqa: F401 -- importing registers the routes
    agent_binary,
    agents,
    audit,
    health,
    images,
    maintenance,
    meta,
    metrics,
    pki,
    provisionerd,
    registry,
    releases,
    templates,
    tokens,
    users,
    workspaces,
)
from appliance.api.blueprints import root, v2
from appliance.api.terraform import terraform


def init_app(app: Flask) -> None:
    app.register_blueprint(v2)
    app.register_blueprint(root)
    app.register_blueprint(terraform)
    maintenance.init_app(app)
