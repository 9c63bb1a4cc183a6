"""The API's blueprints: /api/v2 for the REST API, and the root-level health endpoint."""

from flask import Blueprint

v2 = Blueprint("api", __name__, url_prefix="/api/v2")
root = Blueprint("api_root", __name__)
