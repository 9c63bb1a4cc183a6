"""Production WSGI entry point: `gunicorn 'appliance.wsgi:app'`.

Configuration comes from /etc/appliance/appliance.toml and APPLIANCE_* variables. postgres_url
is required here: embedded PostgreSQL belongs to `appliance server` only. Run `appliance
migrate` before starting; this refuses to serve a schema that is not up to date.
"""

from __future__ import annotations

from appliance.app import create_app
from appliance.config import load_server_config
from appliance.db.database import Database
from appliance.db.migrate import pending_migrations
from appliance.errors import ConfigError
from appliance.logs import configure_logging

config = load_server_config()
configure_logging(config.log_format, config.log_level)
if config.postgres_url is None:
    raise ConfigError("postgres_url is not set, and gunicorn cannot start embedded PostgreSQL.",
                      "Set APPLIANCE_POSTGRES_URL or postgres_url in appliance.toml, or use "
                      "'appliance server' for the embedded quickstart.")
_pending = pending_migrations(config.postgres_url)
if _pending:
    raise ConfigError(f"The database schema is behind: {len(_pending)} migration(s) pending.",
                      "Run 'appliance migrate' first, then start gunicorn again.")
app = create_app(config, Database(config.postgres_url))
