"""HTTP client for the REST API: which server and token to use, and errors an operator can read."""

from __future__ import annotations

import functools
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
    ca_file: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT
        if self.token:
            self._http.headers["Authorization"] = f"Bearer {self.token}"

    def request(self, method: str, path: str, *, body: Any = None,
                params: dict[str, Any] | None = None, ok: tuple[int, ...] = ()) -> Any:
        response = self.send(method, path, body=body, params=params)
        if response.status_code >= 400 and response.status_code not in ok:
            raise api_error(response)
        if response.status_code in ok:
            return None
        return response.json() if response.content else None

    def stream_lines(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        response = self.send("GET", path, params=params, stream=True)
        if response.status_code >= 400:
            raise api_error(response)
        with response:
            for line in response.iter_lines(decode_unicode=True):
                if line:
                    yield line

    def upload(self, path: str, data: bytes, content_type: str) -> Any:
        """POST a raw body (a tar archive); the JSON answer, or an OperatorError."""
        response = self.send("POST", path, data=data, headers={"Content-Type": content_type})
        if response.status_code >= 400:
            raise api_error(response)
        return response.json()

    def send(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
             stream: bool = False, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        """The raw response (for streams and uploads); connection problems become OperatorErrors."""
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            # verify is passed per request: requests lets REQUESTS_CA_BUNDLE override Session.verify.
            return self._http.request(method, self.url + path, json=body, params=clean, timeout=self.timeout,
                                      stream=stream, verify=self.ca_file or True, data=data, headers=headers)
        except requests.exceptions.SSLError as err:
            raise OperatorError(
                f"TLS verification failed for {self.url}.",
                "Pass --ca-file with the appliance's CA bundle ('appliance pki trust-bundle' on the host), or "
                "log in with --ca-fingerprint <root SHA-256 fingerprint> to fetch and check it.") from err
        except requests.ConnectionError as err:
            raise OperatorError(f"Cannot reach {self.url}.",
                                "Check the URL and that 'appliance server' is running.") from err
        except requests.Timeout as err:
            raise OperatorError(f"{self.url} did not answer within {self.timeout:.0f}s.",
                                "The server may be overloaded; try again.") from err


def api_error(response: requests.Response) -> OperatorError:
    """The server's refusal as message + hint, with each field it names on its own line."""
    try:
        body = response.json()
        message, detail = body.get("message", ""), body.get("detail", "")
        validations = body.get("validations") or []
    except ValueError:
        message, detail, validations = response.text[:200], "", []
    if response.status_code == 401 and not detail:
        detail = "Log in again with 'appliance login URL'."
    fields = [f"  field: {v.get('field')}" if v.get("detail") == message else f"  {v.get('field')}: {v.get('detail')}"
              for v in validations if v.get("field")]
    return OperatorError("\n".join([f"{message} (HTTP {response.status_code})", *fields]), detail)


def with_client(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --url/--token/--ca-file to a command and hand it a ready `client: ApiClient`."""

    @functools.wraps(func)
    def run(*args: Any, url: str | None, token: str | None, ca_file: str | None, **kwargs: Any) -> Any:
        return func(*args, client=make_client(url, token, ca_file), **kwargs)

    run = click.option("--ca-file", "ca_file", default=None, metavar="PEM",
                       help="CA bundle that verifies an https URL [env APPLIANCE_CA_FILE].")(run)
    run = click.option("--token", "token", default=None, metavar="TOKEN",
                       help="Session or API token [env APPLIANCE_SESSION_TOKEN].")(run)
    return click.option("--url", "url", default=None, metavar="URL", help="Appliance URL [env APPLIANCE_URL].")(run)


def make_client(url: str | None, token: str | None, ca_file: str | None = None) -> ApiClient:
    """Flags win over environment, which wins over the session stored by 'appliance login'."""
    stored = load_session()
    url = url or os.environ.get("APPLIANCE_URL") or (stored.url if stored else None)
    token = token or os.environ.get("APPLIANCE_SESSION_TOKEN") or (stored.token if stored else None)
    ca_file = ca_file or os.environ.get("APPLIANCE_CA_FILE") or (stored.ca_file if stored else None)
    if not url or not token:
        raise OperatorError("You are not logged in.",
                            "Run 'appliance login URL', or set APPLIANCE_URL and APPLIANCE_SESSION_TOKEN.")
    return ApiClient(url, token, ca_file)
