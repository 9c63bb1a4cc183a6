"""GET /bin/appliance-agent-linux-amd64: the workspace agent executable the init script downloads.

Public, like the provider mirror: the executable holds no secret, and the init script has only the CA
bundle when it fetches it. It is served from agent_binary_dir; `appliance server` builds it there in
the background at start and marks the build with a file holding its pid, so a request meanwhile gets
503 with Retry-After (the init script retries) instead of a 404 that reads like a broken install.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from flask import Response, send_file

from appliance.api.blueprints import root
from appliance.api.errors import error_response
from appliance.auth.web import server_config
from appliance.config import ServerConfig
from appliance.sdk.agents import AGENT_BINARY_PATH

BINARY_NAME = PurePosixPath(AGENT_BINARY_PATH).name
RETRY_AFTER_SECONDS = 10


def binary_path(config: ServerConfig) -> Path:
    return config.agent_binary_dir / BINARY_NAME


def building_marker(config: ServerConfig) -> Path:
    """Present, holding the builder's pid, while a server builds the executable into agent_binary_dir."""
    return config.agent_binary_dir / f"{BINARY_NAME}.building"


def is_building(config: ServerConfig) -> bool:
    """True while a live process is building the executable (a marker left by a killed server is ignored)."""
    try:
        pid = int(building_marker(config).read_text().strip() or "0")
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return pid > 0


@root.get(AGENT_BINARY_PATH)
def agent_binary() -> Response:
    config = server_config()
    path = binary_path(config)
    if path.is_file():
        return send_file(path, mimetype="application/octet-stream", as_attachment=True, download_name=BINARY_NAME)
    if is_building(config):
        response = error_response({
            "message": "The workspace agent is still being built (the server's first start, about a minute).",
            "detail": f"Try again in {RETRY_AFTER_SECONDS} s; the workspace's init script retries on its own."}, 503)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return error_response({
        "message": f"The workspace agent executable is missing: {path} does not exist.",
        "detail": "An installed appliance ships it in its release: check agent_binary_dir in appliance.toml, or "
                  "reinstall the release. Elsewhere run 'appliance agent package DIR' and set agent_binary_dir "
                  "to DIR; 'appliance server' with embedded PostgreSQL builds it at start."}, 404)
