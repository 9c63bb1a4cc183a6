"""HTTP client for the REST API: which server and token to use, and errors an operator can read."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click

from appliance.cli.session_store import load_session
from appliance.errors import OperatorError
from appliance.sdk.client import Client, retry_policy

USER_AGENT = "appliance-cli"


class ApiClient(Client):
    """The CLI's client: the SDK's, with the CLI's user agent."""

    def __init__(self, url: str, token: str | None = None, ca_file: str | None = None, timeout: float = 30.0) -> None:
        # A person is waiting: three tries (about 4 s of backoff) before saying the server is unreachable.
        super().__init__(url, token, ca_file=ca_file, timeout=timeout, user_agent=USER_AGENT,
                         retries=retry_policy(attempts=3))


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
