"""`appliance users list|show|create|suspend|activate|roles|delete`."""

from __future__ import annotations

import click

from appliance.cli.client import ApiClient, with_client
from appliance.cli.output import Column, emit, emit_one, output_option, when
from appliance.sdk.meta import MessageResponse
from appliance.sdk.users import CreateUserRequest, UpdateRolesRequest, UserListResponse, UserResponse


def _roles(user: UserResponse) -> str:
    return ", ".join(r.name for r in user.roles) or "member"


USER_FIELDS: list[Column] = [
    ("Username", lambda u: u.username),
    ("Email", lambda u: u.email),
    ("Name", lambda u: u.name),
    ("Status", lambda u: u.status),
    ("Roles", _roles),
    ("Last seen", lambda u: when(u.last_seen_at, "never")),
    ("ID", lambda u: u.id),
]


@click.group()
def users() -> None:
    """Manage user accounts (list needs a role that can read users)."""


@users.command("list")
@with_client
@output_option
@click.option("--search", "-q", default="", help="Match username, email or name.")
@click.option("--status", type=click.Choice(["active", "suspended"]), default=None)
def list_users(client: ApiClient, output: str, search: str, status: str | None) -> None:
    """List users."""
    result = client.call("GET", "/api/v2/users", UserListResponse,
                         params={"q": search, "status": status, "limit": 1000})
    emit(result.users, USER_FIELDS[:6], output)


@users.command("show")
@click.argument("user")
@with_client
@output_option
def show_user(user: str, client: ApiClient, output: str) -> None:
    """Show one user by username, id or 'me'."""
    emit_one(client.call("GET", f"/api/v2/users/{user}", UserResponse), output, USER_FIELDS)


@users.command("create")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--password", help="Initial password (prompted if omitted).")
@with_client
@output_option
def create_user(username: str, email: str, name: str, password: str | None, client: ApiClient, output: str) -> None:
    """Create a user with an initial password."""
    password = password or click.prompt("Initial password", hide_input=True, confirmation_prompt=True, err=True)
    user = client.call("POST", "/api/v2/users", UserResponse,
                       body=CreateUserRequest(username=username, email=email, name=name, password=password))
    emit_one(user, output, USER_FIELDS)


def _set_status(client: ApiClient, user: str, verb: str, output: str) -> None:
    result = client.call("PUT", f"/api/v2/users/{user}/status/{verb}", UserResponse)
    emit_one(result, output, USER_FIELDS[:5])


@users.command("suspend")
@click.argument("user")
@with_client
@output_option
def suspend(user: str, client: ApiClient, output: str) -> None:
    """Suspend a user: their sessions end and their tokens stop working."""
    _set_status(client, user, "suspend", output)


@users.command("activate")
@click.argument("user")
@with_client
@output_option
def activate(user: str, client: ApiClient, output: str) -> None:
    """Activate a suspended user."""
    _set_status(client, user, "activate", output)


@users.command("roles")
@click.argument("user")
@click.argument("roles", nargs=-1)
@with_client
@output_option
def set_roles(user: str, roles: tuple[str, ...], client: ApiClient, output: str) -> None:
    """Set a user's site roles (owner, template-admin, user-admin, auditor); none = member only."""
    result = client.call("PUT", f"/api/v2/users/{user}/roles", UserResponse,
                         body=UpdateRolesRequest(roles=list(roles)))
    emit_one(result, output, USER_FIELDS[:5])


@users.command("delete")
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_client
def delete_user(user: str, yes: bool, client: ApiClient) -> None:
    """Delete a user and revoke all their tokens and sessions."""
    if not yes:
        click.confirm(f"Delete user {user}?", abort=True, err=True)
    click.echo(client.call("DELETE", f"/api/v2/users/{user}", MessageResponse).message)
