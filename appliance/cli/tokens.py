"""`appliance tokens create|list|revoke`: API tokens for scripts and CI."""

from __future__ import annotations

import click

from appliance.cli.client import ApiClient, with_client
from appliance.cli.output import Column, emit, output_option

TOKEN_COLUMNS: list[Column] = [
    ("ID", lambda t: t["id"]),
    ("Name", lambda t: t["token_name"]),
    ("Created", lambda t: t["created_at"][:19]),
    ("Expires", lambda t: t["expires_at"][:19]),
    ("Last used", lambda t: (t["last_used_at"] or "never")[:19]),
]


@click.group()
def tokens() -> None:
    """Manage your API tokens."""


@tokens.command("create")
@click.argument("name")
@click.option("--lifetime", default=None, help="How long it lasts, e.g. 7d, 12h (default 30d).")
@click.option("--user", default="me", show_default=True, help="Whose token (owners may act for others).")
@with_client
def create(name: str, lifetime: str | None, user: str, client: ApiClient) -> None:
    """Create a token and print it once on stdout (only a hash is stored)."""
    body = {"token_name": name, **({"lifetime": lifetime} if lifetime else {})}
    result = client.request("POST", f"/api/v2/users/{user}/keys/tokens", body=body)
    click.echo(f"Token {result['token']['id']} expires {result['token']['expires_at'][:19]}; "
               "it is shown once:", err=True)
    click.echo(result["key"])


@tokens.command("list")
@click.option("--user", default="me", show_default=True)
@with_client
@output_option
def list_tokens(user: str, client: ApiClient, output: str) -> None:
    """List active tokens."""
    result = client.request("GET", f"/api/v2/users/{user}/keys/tokens")
    emit(result["tokens"], TOKEN_COLUMNS, output)


@tokens.command("revoke")
@click.argument("token_id")
@click.option("--user", default="me", show_default=True)
@with_client
def revoke(token_id: str, user: str, client: ApiClient) -> None:
    """Revoke a token by its ID."""
    result = client.request("DELETE", f"/api/v2/users/{user}/keys/{token_id}")
    click.echo(result["message"])
