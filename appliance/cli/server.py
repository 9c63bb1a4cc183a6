"""`appliance server`: serve the console and API, with embedded PostgreSQL unless told otherwise."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from appliance import __version__
from appliance.auth.users import has_any_user
from appliance.config import ServerConfig, env_name, load_server_config
from appliance.errors import OperatorError
from appliance.logs import configure_logging
from appliance.sdk.agents import AGENT_BINARY_PATH
from appliance.server.base_image import IMAGE_NAME
from appliance.server.runtime import Runtime


def _flag(name: str, help_text: str, **kwargs: Any) -> Any:
    key = name.lstrip("-").replace("-", "_")
    return click.option(name, key, default=None, show_envvar=False,
                         help=f"{help_text} [env {env_name(key)}; appliance.toml key {key}]", **kwargs)


def server_options(func: Any) -> Any:
    for option in reversed([
        click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                     help="Config file [env APPLIANCE_CONFIG; default /etc/appliance/appliance.toml if present]"),
        _flag("--http-address", "Address to serve HTTP on (default 127.0.0.1:3000)."),
        _flag("--tls-address", "Address to serve HTTPS on, with a certificate from the internal CA."),
        _flag("--access-url", "URL users reach the appliance at (default http://<http-address>)."),
        _flag("--postgres-url", "PostgreSQL URL; without it an embedded PostgreSQL 15 is started."),
        _flag("--data-dir", "State directory (default ~/.local/share/appliance, /var/lib/appliance as root)."),
        _flag("--log-format", "Log format: text or json.", type=click.Choice(["text", "json"])),
        _flag("--log-level", "Log level: debug, info, warning or error."),
    ]):
        func = option(func)
    return func


@click.command()
@server_options
def server(**flags: Any) -> None:
    """Start the control plane: console, API and (by default) an embedded PostgreSQL."""
    config = load_server_config(flags)
    configure_logging(config.log_format, config.log_level)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    runtime = Runtime(config, say=lambda line: console.print(f"[dim]{escape(line)}[/]"))
    try:
        runtime.start()
        assert runtime.db is not None
        with runtime.db.transaction() as conn:
            ready_for_login = has_any_user(conn)
        _print_banner(console, config, runtime, ready_for_login)
        runtime.serve_forever()
    finally:
        runtime.stop()


def cli_command() -> str:
    """How the user can type this command: 'appliance' when on PATH, else the path they used."""
    invoked = Path(sys.argv[0])
    on_path = shutil.which("appliance")
    if invoked.name != "appliance" or (on_path and Path(on_path).resolve() == invoked.resolve()):
        return "appliance"
    return os.path.relpath(invoked) if not invoked.is_absolute() else str(invoked)


def _print_problem(console: Console, label: str, problem: OperatorError) -> None:
    """A component the server runs without, in yellow: what is wrong, then what to do."""
    console.print(f"  [yellow]{label:<17}{escape(problem.message)}[/]")
    console.print(f"  [yellow]{'':<17}{escape(problem.hint)}[/]")


def _print_banner(console: Console, config: ServerConfig, runtime: Runtime, has_users: bool) -> None:
    url = config.access_url
    command = cli_command()
    database = (f"embedded PostgreSQL in {runtime.embedded.root}" if runtime.embedded
                else "external PostgreSQL (postgres_url)")
    console.print(f"\n[bold green]Appliance {__version__} is running.[/]")
    console.print(f"  Console and API: [bold]{url}[/]")
    if config.tls_address is not None:
        console.print(f"  Plain HTTP:      http://{config.http_address}")
    console.print(f"  Database:        {database}")
    if runtime.ca is not None:
        console.print(f"  CA bundle:       {runtime.ca.layout.trust_bundle}  ({url}/api/v2/pki/ca.pem)")
        console.print(f"  CA fingerprint:  {runtime.ca.root_fingerprint()}")
        if runtime.ca_created and runtime.ca.layout.root_passphrase.exists():
            console.print("  [yellow]The CA's root key passphrase is stored beside it (quickstart). For production, "
                          f"run '{command} pki export-root FILE --remove'.[/]")
    if runtime.provider_problem is not None:
        _print_problem(console, "Provider:", runtime.provider_problem)
    if runtime.registry is not None:
        console.print(f"  Registry:        {runtime.registry.url}  (storage {config.registry_dir / 'storage'})")
    elif runtime.registry_problem is not None:
        _print_problem(console, "Registry:", runtime.registry_problem)
    if runtime.workspace_runtime_problem is not None:
        _print_problem(console, "Workspaces:", runtime.workspace_runtime_problem)
    elif runtime.workspace_runtime is not None:
        console.print(f"  Workspaces:      podman, through {runtime.workspace_runtime.service.settings.socket}")
    if runtime.base_image is not None and runtime.base_image.needs_build:
        console.print(f"  Workspace image: building {IMAGE_NAME} in the background (a minute or two, once per "
                      "machine)")
    if runtime.agent_binary is not None:
        building = "building it in the background (about a minute), then " if runtime.agent_binary.needs_build else ""
        console.print(f"  Workspace agent: {building}{url}{AGENT_BINARY_PATH}")
    if has_users:
        console.print(f"  Log in:          {url}/login   or   {command} login {url}")
    else:
        console.print(f"  First user:      open [bold]{url}/setup[/] to create the owner account,")
        console.print(f"                   or run: {command} login {url}")
    console.print("  Stop:            Ctrl+C\n")
