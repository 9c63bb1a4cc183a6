"""Production WSGI entry point: `gunicorn 'appliance.wsgi:app'`.

Configuration comes from /etc/appliance/appliance.toml and APPLIANCE_* variables. postgres_url
is required here: embedded PostgreSQL belongs to `appliance server` only. Run `appliance
migrate` before starting; this refuses to serve a schema that is not up to date.
"""

from __future__ import annotations

from appliance.app import create_app, freeze_startup_heap
from appliance.config import load_server_config
from appliance.db.database import Database
from appliance.db.migrate import require_current_schema
from appliance.logs import configure_logging

config = load_server_config()
configure_logging(config.log_format, config.log_level)
app = create_app(config, Database(require_current_schema(config.postgres_url, "gunicorn")))
freeze_startup_heap()  # each worker imports this module after gunicorn forks it
