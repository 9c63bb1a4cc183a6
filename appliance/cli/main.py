"""`appliance`: one entry point; operator errors print a message and a hint, never a traceback."""

from __future__ import annotations

import sys
from typing import Any

import click

from appliance import __version__
from appliance.cli import (
    admin,
    audit,
    builds,
    gateway,
    mirror,
    pki,
    provider,
    provisionerd,
    server,
    session,
    templates,
    tokens,
    users,
    workspaces,
)
from appliance.errors import OperatorError
from bundles.errors import BundleError


class Group(click.Group):
    """Print OperatorError as message + hint and exit 1; --debug keeps the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (OperatorError, BundleError) as err:
            if ctx.params.get("debug"):
                raise
            click.secho(f"error: {err.message}", fg="red", err=True)
            if err.hint:
                click.echo(f"hint: {err.hint}", err=True)
            sys.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="appliance")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """Run and use the air-gapped CDE appliance's control plane."""


cli.add_command(server.server)
cli.add_command(gateway.gateway)
cli.add_command(admin.migrate)
cli.add_command(admin.setup_link)
cli.add_command(session.login)
cli.add_command(session.logout)
cli.add_command(session.whoami)
cli.add_command(users.users)
cli.add_command(tokens.tokens)
cli.add_command(audit.audit)
cli.add_command(pki.pki)
cli.add_command(mirror.mirror)
cli.add_command(provider.provider)
cli.add_command(provisionerd.provisionerd)

# Templates, workspaces and their builds: `appliance VERB` for daily use, `NOUN VERB` to administer.
cli.add_command(templates.templates)
cli.add_command(builds.builds)
cli.add_command(workspaces.create)
cli.add_command(workspaces.list_workspaces)
cli.add_command(workspaces.show)
cli.add_command(workspaces.start)
cli.add_command(workspaces.stop)
cli.add_command(workspaces.update)
cli.add_command(workspaces.delete)
