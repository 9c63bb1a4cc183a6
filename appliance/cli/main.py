"""`appliance`: one entry point; operator errors print a message and a hint, never a traceback."""

from __future__ import annotations

import click

from appliance import __version__
from appliance.cli.lazy import LazyGroup
from operator_errors.cli import Group, debug_option

# Each command's module is imported only when it runs (or for --help), so `appliance provisionerd start`
# on a daemon host loads neither the server nor the database driver.
COMMANDS: dict[str, str] = {
    "server": "appliance.cli.server:server",
    "gateway": "appliance.cli.gateway:gateway",
    "relay": "appliance.cli.relay:relay",
    "migrate": "appliance.cli.admin:migrate",
    "setup-link": "appliance.cli.admin:setup_link",
    # Run by the installer around an upgrade, rollback or restore (directly on PostgreSQL, as root).
    "maintenance": "appliance.cli.maintenance:maintenance",
    "releases": "appliance.cli.releases:releases",
    "login": "appliance.cli.session:login",
    "logout": "appliance.cli.session:logout",
    "whoami": "appliance.cli.session:whoami",
    "users": "appliance.cli.users:users",
    "tokens": "appliance.cli.tokens:tokens",
    "audit": "appliance.cli.audit:audit",
    "pki": "appliance.cli.pki:pki",
    "registry": "appliance.cli.registry:registry",
    "images": "appliance.cli.images:images",
    "mirror": "appliance.cli.mirror:mirror",
    "provider": "appliance.cli.provider:provider",
    "agent": "appliance.cli.agent:agent",
    "provisionerd": "appliance.cli.provisionerd:provisionerd",
    "doctor": "appliance.cli.doctor:doctor",
    "support-bundle": "appliance.cli.support:support_bundle",
    "health": "appliance.cli.health:health",
    "runtime": "appliance.cli.runtime:runtime",
    # Templates, workspaces and their builds: `appliance VERB` for daily use, `NOUN VERB` to administer.
    "templates": "appliance.cli.templates:templates",
    "builds": "appliance.cli.builds:builds",
    "create": "appliance.cli.workspaces:create",
    "list": "appliance.cli.workspaces:list_workspaces",
    "show": "appliance.cli.workspaces:show",
    "start": "appliance.cli.workspaces:start",
    "stop": "appliance.cli.workspaces:stop",
    "update": "appliance.cli.workspaces:update",
    "delete": "appliance.cli.workspaces:delete",
    # Reaching a workspace's agent: every byte through the relay.
    "ping": "appliance.cli.ping:ping",
    "speedtest": "appliance.cli.ping:speedtest",
    "port-forward": "appliance.cli.port_forward:port_forward",
    "ssh": "appliance.cli.ssh:ssh",
    "config-ssh": "appliance.cli.ssh_config:config_ssh",
}


class _Cli(LazyGroup, Group):
    """The `appliance` group: lazy subcommands, operator errors printed by Group."""


@click.group(cls=_Cli, lazy_subcommands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="appliance")
@debug_option
def cli() -> None:
    """Run and use the air-gapped CDE appliance's control plane."""
