"""HTTP client for the REST API: which server and token to use, and errors an operator can read."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click
import requests

from appliance.cli.session_store import load_session
from appliance.errors import OperatorError

USER_AGENT = "appliance-cli"


@dataclass
class ApiClient:
    url: str
    token: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT
        if self.token:
            self._http.headers["Authorization"] = f"Bearer {self.token}"

    def request(self, method: str, path: str, *, body: Any = None,
                params: dict[str, Any] | None = None, ok: tuple[int, ...] = ()) -> Any:
        response = self._send(method, path, body=body, params=params)
        if response.status_code >= 400 and response.status_code not in ok:
            raise api_error(response)
        if response.status_code in ok:
            return None
        return response.json() if response.content else None

    def stream_lines(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        response = self._send("GET", path, params=params, stream=True)
        if response.status_code >= 400:
            raise api_error(response)
        with response:
            for line in response.iter_lines(decode_unicode=True):
                if line:
                    yield line

    def _send(self, method: str, path: str, *, body: Any = None,
              params: dict[str, Any] | None = None, stream: bool = False) -> requests.Response:
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            return self._http.request(method, self.url + path, json=body, params=clean,
                                      timeout=self.timeout, stream=stream)
        except requests.exceptions.SSLError as err:
            raise OperatorError(f"TLS verification failed for {self.url}: {err}.",
                                "Point REQUESTS_CA_BUNDLE at the appliance's CA bundle.") from err
        except requests.ConnectionError as err:
            raise OperatorError(f"Cannot reach {self.url}.",
                                "Check the URL and that 'appliance server' is running.") from err
        except requests.Timeout as err:
            raise OperatorError(f"{self.url} did not answer within {self.timeout:.0f}s.",
                                "The server may be overloaded; try again.") from err


def api_error(response: requests.Response) -> OperatorError:
    try:
        body = response.json()
        message, detail = body.get("message", ""), body.get("detail", "")
    except ValueError:
        message, detail = response.text[:200], ""
    if response.status_code == 401 and not detail:
        detail = "Log in again with 'appliance login URL'."
    return OperatorError(f"{message} (HTTP {response.status_code})", detail)


def client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--token", "token", default=None, metavar="TOKEN",
                        help="Session or API token [env APPLIANCE_SESSION_TOKEN].")(func)
    return click.option("--url", "url", default=None, metavar="URL",
                        help="Appliance URL [env APPLIANCE_URL].")(func)


def make_client(url: str | None, token: str | None) -> ApiClient:
    """Flags win over environment, which wins over the session stored by 'appliance login'."""
    stored = load_session()
    url = url or os.environ.get("APPLIANCE_URL") or (stored.url if stored else None)
    token = token or os.environ.get("APPLIANCE_SESSION_TOKEN") or (stored.token if stored else None)
    if not url or not token:
        raise OperatorError("You are not logged in.",
                            "Run 'appliance login URL', or set APPLIANCE_URL and APPLIANCE_SESSION_TOKEN.")
    return ApiClient(url, token)
