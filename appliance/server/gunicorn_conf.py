"""gunicorn's settings for the installed console (`--config python:appliance.server.gunicorn_conf`).

gunicorn takes one config module: this one, with the metrics' hooks (appliance.metrics.gunicorn,
docs/adr/0042) and the logging below. gunicorn's own log (the arbiter and its workers' starts and
stops) goes out as the same JSON events as the app's (operator_errors.logs), so the console's journal
is one format. Its access log stays off: it would record query strings, and a one-time setup link
carries its token in one; the app logs requests itself, path only.
"""

from __future__ import annotations

from typing import Any

from appliance.metrics.gunicorn import child_exit, on_starting

__all__ = ["child_exit", "logconfig_dict", "on_starting"]

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        # A logging config turns gunicorn's access log on: nothing at INFO passes CRITICAL, so it stays off.
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
    "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "formatters": {"json": {"()": "operator_errors.logs.JsonFormatter"}},
}
