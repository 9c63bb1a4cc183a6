"""`appliance tokens create|list|revoke`: API tokens for scripts and CI."""

from __future__ import annotations

from typing import Literal

import click

from appliance.cli.client import ApiClient, with_client
from appliance.cli.output import Column, emit, output_option, when
from appliance.sdk.meta import MessageResponse
from appliance.sdk.tokens import CreateTokenRequest, TokenCreatedResponse, TokenListResponse

TOKEN_COLUMNS: list[Column] = [
    ("ID", lambda t: t.id),
    ("Name", lambda t: t.token_name),
    ("Scope", lambda t: t.scope),
    ("Created", lambda t: when(t.created_at)),
    ("Expires", lambda t: when(t.expires_at)),
    ("Last used", lambda t: when(t.last_used_at, "never")),
]


@click.group()
def tokens() -> None:
    """Manage your API tokens."""


@tokens.command("create")
@click.argument("name")
@click.option("--lifetime", default=None, help="How long it lasts, e.g. 7d, 12h (default 30d).")
@click.option("--user", default="me", show_default=True, help="Whose token (owners may act for others).")
@click.option("--scope", type=click.Choice(["all", "metrics"]), default="all", show_default=True,
              help="'metrics': the token opens only GET /api/v2/metrics, for a Prometheus scraper.")
@with_client
def create(name: str, lifetime: str | None, user: str, scope: Literal["all", "metrics"], client: ApiClient) -> None:
    """Create a token and print it once on stdout (only a hash is stored)."""
    result = client.call("POST", f"/api/v2/users/{user}/keys/tokens", TokenCreatedResponse,
                         body=CreateTokenRequest(token_name=name, lifetime=lifetime or None, scope=scope))
    click.echo(f"Token {result.token.id} expires {when(result.token.expires_at)}; it is shown once:", err=True)
    click.echo(result.key)


@tokens.command("list")
@click.option("--user", default="me", show_default=True)
@with_client
@output_option
def list_tokens(user: str, client: ApiClient, output: str) -> None:
    """List active tokens."""
    result = client.call("GET", f"/api/v2/users/{user}/keys/tokens", TokenListResponse)
    emit(result.tokens, TOKEN_COLUMNS, output)


@tokens.command("revoke")
@click.argument("token_id")
@click.option("--user", default="me", show_default=True)
@with_client
def revoke(token_id: str, user: str, client: ApiClient) -> None:
    """Revoke a token by its ID."""
    click.echo(client.call("DELETE", f"/api/v2/users/{user}/keys/{token_id}", MessageResponse).message)
