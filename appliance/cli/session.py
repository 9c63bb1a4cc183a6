"""`appliance login`, `logout` and `whoami`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from appliance.cli.client import ApiClient, with_client
from appliance.cli.output import emit_one, output_option
from appliance.cli.session_store import (
    StoredSession,
    forget_session,
    load_session,
    save_session,
    trusted_ca_path,
)
from appliance.cli.trust import fetch_pinned_bundle
from appliance.cli.users import USER_FIELDS
from appliance.errors import OperatorError
from appliance.sdk.meta import MessageResponse
from appliance.sdk.users import FirstUserRequest, LoginRequest, LoginResponse, UserResponse


def _has_first_user(client: ApiClient) -> bool:
    return client.find("/api/v2/users/first", MessageResponse) is not None


def _create_first_user(client: ApiClient, username: str | None, email: str | None,
                       password: str | None) -> tuple[str, str]:
    click.echo(f"{client.url} has no users yet; create the first one (it becomes the Owner).", err=True)
    username = username or click.prompt("Username", err=True)
    email = email or click.prompt("Email", err=True)
    password = password or click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    client.call("POST", "/api/v2/users/first", UserResponse,
                body=FirstUserRequest(username=username, email=email, password=password))
    click.echo(f"Created owner {username}.", err=True)
    return username, password


def _trusted_ca(url: str, ca_file: str | None, ca_fingerprint: str | None) -> str | None:
    """The CA bundle to verify url with: given, fetched and pinned, or none (system CAs / plain HTTP)."""
    if ca_file:
        return str(Path(ca_file).resolve())
    if ca_fingerprint:
        path = trusted_ca_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_bytes(fetch_pinned_bundle(url, ca_fingerprint))
        click.echo(f"The CA's root fingerprint matches; its bundle is saved in {path}.", err=True)
        return str(path)
    return os.environ.get("APPLIANCE_CA_FILE")


@click.command()
@click.argument("url")
@click.option("--username", help="Username or email (prompted if omitted).")
@click.option("--password", help="Password (prompted if omitted; prefer the prompt, flags show in ps).")
@click.option("--first-user-email", help="When the server has no users: email for the owner to create.")
@click.option("--ca-file", help="CA bundle that verifies an https URL [env APPLIANCE_CA_FILE].")
@click.option("--ca-fingerprint", help="Fetch the appliance's CA bundle and trust it only if its root has this "
                                       "SHA-256 fingerprint (compare it out of band).")
def login(url: str, username: str | None, password: str | None, first_user_email: str | None,
          ca_file: str | None, ca_fingerprint: str | None) -> None:
    """Log in to an appliance and store the session token for later commands."""
    trusted = _trusted_ca(url, ca_file, ca_fingerprint)
    client = ApiClient(url, ca_file=trusted)
    if not _has_first_user(client):
        username, password = _create_first_user(client, username, first_user_email, password)
    username = username or click.prompt("Username or email", err=True)
    password = password or click.prompt("Password", hide_input=True, err=True)
    result = client.call("POST", "/api/v2/users/login", LoginResponse,
                         body=LoginRequest(username=username, password=password))
    path = save_session(StoredSession(url=client.url, token=result.session_token, ca_file=trusted))
    me = ApiClient(client.url, result.session_token, trusted).call("GET", "/api/v2/users/me", UserResponse)
    click.echo(f"Logged in to {client.url} as {me.username}. Session saved in {path}.")


@click.command()
def logout() -> None:
    """End the stored session on the server and forget it locally."""
    stored = load_session()
    if stored is None:
        raise OperatorError("You are not logged in.", "Nothing to do.")
    try:
        ApiClient(stored.url, stored.token, stored.ca_file).request("POST", "/api/v2/users/logout", ok=(401,))
    finally:
        forget_session()
    click.echo(f"Logged out of {stored.url}.")


@click.command()
@with_client
@output_option
def whoami(client: ApiClient, output: str) -> None:
    """Show the user the current token belongs to."""
    emit_one(client.call("GET", "/api/v2/users/me", UserResponse), output, USER_FIELDS)
