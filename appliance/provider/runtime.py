"""The provider's client for the runtime service: JSON over the build's unix socket, with its credential.

Only workspace builds carry the socket and the credential (APPLIANCE_RUNTIME_SOCKET/_TOKEN); a
template import never talks to the service, so everything an import must check is checked at
validate time, from configuration alone (image_problem).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from appliance.sdk.runtime import REGISTRY_ENV, SOCKET_ENV, TOKEN_ENV

# Creating a container pulls its image and waits for it to run: minutes on a cold registry.
REQUEST_TIMEOUT = 900.0
_DEFAULT_REGISTRIES = ("docker.io", "index.docker.io")


class RuntimeCallFailed(Exception):
    """The service refused or failed a request; summary and detail become a terraform diagnostic."""

    def __init__(self, summary: str, detail: str, rule: str | None = None) -> None:
        super().__init__(f"{summary}: {detail}")
        self.summary, self.detail, self.rule = summary, detail, rule


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class RuntimeClient:
    def __init__(self, socket_path: str, token: str, timeout: float = REQUEST_TIMEOUT) -> None:
        self.socket_path, self._token, self._timeout = socket_path, token, timeout

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuntimeClient:
        """The client for this build, or RuntimeCallFailed saying the service is only there for builds."""
        path, token = env.get(SOCKET_ENV, ""), env.get(TOKEN_ENV, "")
        if not path or not token:
            raise RuntimeCallFailed(
                "The runtime service is not available to this run",
                f"{SOCKET_ENV} and {TOKEN_ENV} are set by the appliance for workspace builds only. Build the "
                "workspace through the appliance (a template import and terraform run by hand get neither).")
        return cls(path, token)

    def call(self, method: str, kind: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The JSON answer to METHOD /v1/<kind>/<name>; None for 404 and 204."""
        connection = _UnixConnection(self.socket_path, self._timeout)
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, f"/v1/{kind}/{quote(name, safe='')}", body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except OSError as err:
            raise RuntimeCallFailed(
                "Cannot reach the runtime service",
                f"{method} /v1/{kind}/{name} over {self.socket_path}: {err}. Check that the runtime service is "
                "running (embedded: 'appliance server' starts it; installed: appliance-runtime.service).") from err
        finally:
            connection.close()
        if response.status in (204, 404):
            return None
        answer = _json(data)
        if response.status >= 400:
            raise _refusal(response.status, answer)
        return answer


def _json(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        return {"message": data.decode("utf-8", "replace")[:500]}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)[:500]}


def _refusal(status: int, answer: dict[str, Any]) -> RuntimeCallFailed:
    message = str(answer.get("message") or f"HTTP {status}")
    detail = str(answer.get("detail") or "")
    rule = answer.get("rule")
    if isinstance(rule, str) and rule:
        return RuntimeCallFailed(message, detail or f"The workspace policy's rule {rule!r} refused it.", rule)
    return RuntimeCallFailed(message, detail or f"The runtime service answered HTTP {status}.")


def image_registry(image: str) -> str:
    """The registry host[:port] an image reference names (docker's rule: no dot, colon or localhost: Docker Hub)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return _DEFAULT_REGISTRIES[0]


def image_problem(image: str, env: Mapping[str, str]) -> str | None:
    """Why `image` may not be used here (not from the internal registry), or None."""
    internal = env.get(REGISTRY_ENV, "")
    if not internal:
        return None  # terraform by hand: nothing to compare with; the runtime service still refuses
    host = image_registry(image)
    if host.lower() == internal.lower():
        return None
    return (f"image {image!r} comes from {host}, not from the appliance's internal registry {internal}. "
            "Import the image with 'appliance images import', then write it as "
            "\"${data.appliance_workspace.me.registry}/REPOSITORY:TAG\".")
