"""The console's blueprint; its templates and static files ship inside the package."""

from flask import Blueprint

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")
