"""The one HTTP client for the CLI and the daemons: retries with jitter, refusals as readable errors.

Connection errors and 502/503 (nginx or the console restarting) are retried with exponential
backoff and jitter, so a fleet of daemons does not reconnect in lock step; a 4xx is the server's
answer and is never retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import requests
from pydantic import BaseModel
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from appliance.errors import OperatorError

Model = TypeVar("Model", bound=BaseModel)
RETRY_STATUSES = frozenset({502, 503})


class ApiError(OperatorError):
    """The server refused a request: its status, message and detail, as an operator reads them."""

    def __init__(self, status: int, message: str, detail: str = "",
                 validations: list[dict[str, str]] | None = None) -> None:
        fields = [f"  field: {v.get('field')}" if v.get("detail") == message else
                  f"  {v.get('field')}: {v.get('detail')}" for v in (validations or []) if v.get("field")]
        super().__init__("\n".join([f"{message} (HTTP {status})", *fields]), detail)
        self.status = status
        self.server_message = message
        self.detail = detail


def api_error(response: requests.Response) -> ApiError:
    """The server's refusal, with each field it names on its own line."""
    try:
        body = response.json()
        message, detail = str(body.get("message", "")), str(body.get("detail", ""))
        validations = body.get("validations") or []
    except (ValueError, AttributeError):
        message, detail, validations = response.text[:200], "", []
    if response.status_code == 401 and not detail:
        detail = "Log in again with 'appliance login URL'."
    return ApiError(response.status_code, message, detail, validations)


def retry_policy(attempts: int = 6) -> Retry:
    """Back off 0.5 s, 1 s, 2 s ... (at most 30 s) plus up to 1 s of jitter; honour Retry-After."""
    return Retry(total=attempts, connect=attempts, read=0, other=0, status=attempts,
                 status_forcelist=RETRY_STATUSES, allowed_methods=None, backoff_factor=0.5,
                 backoff_max=30.0, backoff_jitter=1.0, raise_on_status=False, respect_retry_after_header=True)


class Client:
    """A session bound to one appliance URL, token and CA bundle."""

    def __init__(self, url: str, token: str | None = None, *, ca_file: str | None = None, timeout: float = 30.0,
                 user_agent: str = "appliance-sdk", headers: dict[str, str] | None = None,
                 retries: Retry | None = None) -> None:
        self.url = url.rstrip("/")
        self.token, self.ca_file, self.timeout = token, ca_file, timeout
        self.http = requests.Session()
        adapter = HTTPAdapter(max_retries=retries if retries is not None else retry_policy())
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        self.http.headers["User-Agent"] = user_agent
        self.http.headers.update(headers or {})
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def send(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
             stream: bool = False, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        """The raw response (for streams and uploads); connection problems become OperatorErrors."""
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            # verify is passed per request: requests lets REQUESTS_CA_BUNDLE override Session.verify.
            return self.http.request(method, self.url + path, json=body, params=clean, timeout=self.timeout,
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

    def request(self, method: str, path: str, *, body: Any = None,
                params: dict[str, Any] | None = None, ok: tuple[int, ...] = ()) -> Any:
        """The JSON answer; a status in `ok` answers None; any other 4xx/5xx raises ApiError."""
        response = self.send(method, path, body=body, params=params)
        if response.status_code >= 400 and response.status_code not in ok:
            raise api_error(response)
        if response.status_code in ok:
            return None
        return response.json() if response.content else None

    def call(self, method: str, path: str, model: type[Model], *, body: BaseModel | dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> Model:
        """Send `body`, parse the answer into `model` (the same declaration the server serialised with)."""
        payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
        return model.model_validate(self.request(method, path, body=payload, params=params))

    def find(self, path: str, model: type[Model]) -> Model | None:
        """GET `path` parsed into `model`, or None when the server answers 404."""
        answer = self.request("GET", path, ok=(404,))
        return None if answer is None else model.model_validate(answer)

    def stream_lines(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        response = self.send("GET", path, params=params, stream=True)
        if response.status_code >= 400:
            raise api_error(response)
        with response:
            for line in response.iter_lines(decode_unicode=True):
                if line:
                    yield line

    def upload(self, path: str, data: bytes, content_type: str) -> Any:
        """POST a raw body (a tar archive); the JSON answer, or an ApiError."""
        response = self.send("POST", path, data=data, headers={"Content-Type": content_type})
        if response.status_code >= 400:
            raise api_error(response)
        return response.json()
