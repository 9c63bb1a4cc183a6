"""The baseline for api_throughput.py: a bare Flask app whose one route returns a constant.

Served by gunicorn with the same settings as the appliance, so the ratio between the two
isolates what the appliance adds per request (auth, a database transaction, JSON, headers).
"""

from __future__ import annotations

from flask import Flask

BODY = '{"ok":true}'
PATH = "/bare"

app = Flask("bare")


@app.get(PATH)
def constant() -> tuple[str, int, dict[str, str]]:
    return BODY, 200, {"Content-Type": "application/json"}
