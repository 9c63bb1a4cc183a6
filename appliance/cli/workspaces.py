"""`appliance create|list|show|start|stop|update|delete`: a developer's workspaces."""

from __future__ import annotations

import json
import sys

import click

from appliance.cli.builds import follow_build, logs_ref, resolve_workspace
from appliance.cli.client import ApiClient, with_client
from appliance.cli.output import Column, emit, output_option, when
from appliance.errors import OperatorError
from appliance.sdk.templates import ParameterResponse, TemplateResponse, VersionResponse
from appliance.sdk.workspaces import (
    BuildResponse,
    CreateBuildRequest,
    CreateWorkspaceRequest,
    ResourceResponse,
    UpdateWorkspaceRequest,
    WorkspaceListResponse,
    WorkspaceResponse,
)

MASK = "********"


def parse_parameters(pairs: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE.", param_hint="--parameter")
        values[name.strip()] = value
    return values


def _prompt_parameter(parameter: ParameterResponse) -> str:
    label = parameter.display_name or parameter.name
    if parameter.description:
        click.echo(f"{label}: {parameter.description}", err=True)
    options = [o["value"] for o in parameter.options]
    if parameter.type == "bool":
        options = ["true", "false"]
    kind = click.Choice(options) if options else click.STRING
    return str(click.prompt(label, type=kind, err=True))


def fill_required(template: str, parameters: list[ParameterResponse], values: dict[str, str],
                  previous: dict[str, str] | None = None) -> dict[str, str]:
    """Ask for required parameters that have no value, on a terminal only; otherwise name them."""
    known = {**(previous or {}), **values}
    missing = [p for p in parameters if p.required and p.name not in known]
    if not missing:
        return values
    if not sys.stdin.isatty():
        names = ", ".join(p.name for p in missing)
        raise OperatorError(f"Template {template} needs a value for: {names}.",
                            "Pass --parameter NAME=VALUE for each (see 'appliance templates show "
                            f"{template}').")
    return {**values, **{p.name: _prompt_parameter(p) for p in missing}}


parameter_option = click.option(
    "--parameter", "-p", "parameters", multiple=True, metavar="NAME=VALUE",
    help="A template parameter's value; repeat for several. Missing required ones are asked for on a terminal.")
no_wait_option = click.option("--no-wait", is_flag=True, help="Return once the build is queued.")


def _after_build(client: ApiClient, build: BuildResponse, ref: str, no_wait: bool) -> None:
    if no_wait:
        click.echo(f"Build #{build.build_number} ({build.transition}) of {ref} is queued; follow it with "
                   f"'appliance builds logs {logs_ref(build, ref)} -f'.")
        return
    follow_build(client, build, ref)


@click.command()
@click.argument("name")
@click.option("--template", "-t", required=True, help="Template to build it from (its active version).")
@parameter_option
@click.option("--owner", default=None, help="Create it for another user (admins).")
@click.option("--no-wait", is_flag=True, help="Return once the first build is queued.")
@with_client
def create(name: str, template: str, parameters: tuple[str, ...], owner: str | None, no_wait: bool,
           client: ApiClient) -> None:
    """Create a workspace from a template and follow its first build."""
    values = parse_parameters(parameters)
    found = client.call("GET", f"/api/v2/templates/{template}", TemplateResponse)
    if not found.active_version_id:
        raise OperatorError(f"Template {template} has no active version yet.",
                            f"Push one with 'appliance templates push DIR --name {template}'.")
    version = client.call("GET", f"/api/v2/templates/{template}/versions/{found.active_version_id}",
                          VersionResponse)
    values = fill_required(template, version.parameters, values)
    body = CreateWorkspaceRequest(template=template, name=name, parameters=values, owner=owner or "me")
    workspace = client.call("POST", "/api/v2/workspaces", WorkspaceResponse, body=body)
    ref = f"{owner}/{name}" if owner else name
    click.echo(f"Created workspace {ref} from {template} {workspace.template_version_name}.", err=True)
    _after_build(client, workspace.latest_build, ref, no_wait)


def _transition(client: ApiClient, ref: str, transition: str, no_wait: bool) -> None:
    workspace = resolve_workspace(client, ref)
    build = client.call("POST", f"/api/v2/workspaces/{workspace.id}/builds", BuildResponse,
                        body=CreateBuildRequest.model_validate({"transition": transition}))
    _after_build(client, build, ref, no_wait)


@click.command()
@click.argument("name")
@no_wait_option
@with_client
def start(name: str, no_wait: bool, client: ApiClient) -> None:
    """Start a workspace (NAME, or owner/name for admins)."""
    _transition(client, name, "start", no_wait)


@click.command()
@click.argument("name")
@no_wait_option
@with_client
def stop(name: str, no_wait: bool, client: ApiClient) -> None:
    """Stop a workspace: ephemeral resources go, persistent ones (home volumes) stay."""
    _transition(client, name, "stop", no_wait)


@click.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@no_wait_option
@with_client
def delete(name: str, yes: bool, no_wait: bool, client: ApiClient) -> None:
    """Delete a workspace and destroy all its resources, persistent ones included."""
    if not yes:
        click.confirm(f"Delete workspace {name} and destroy all its resources, home volume included?",
                      abort=True, err=True)
    _transition(client, name, "delete", no_wait)


@click.command()
@click.argument("name")
@parameter_option
@no_wait_option
@with_client
def update(name: str, parameters: tuple[str, ...], no_wait: bool, client: ApiClient) -> None:
    """Rebuild a workspace on its template's active version."""
    values = parse_parameters(parameters)
    workspace = resolve_workspace(client, name)
    if not workspace.outdated:
        click.echo(f"{name} already uses the active version of {workspace.template_name} "
                   f"({workspace.template_version_name}).")
        return
    template = client.call("GET", f"/api/v2/templates/{workspace.template_id}", TemplateResponse)
    version = client.call("GET", f"/api/v2/templates/{template.id}/versions/{template.active_version_id}",
                          VersionResponse)
    values = fill_required(template.name, version.parameters, values, workspace.parameters)
    build = client.call("POST", f"/api/v2/workspaces/{workspace.id}/update", BuildResponse,
                        body=UpdateWorkspaceRequest(parameters=values))
    _after_build(client, build, name, no_wait)


def _version(workspace: WorkspaceResponse) -> str:
    return f"{workspace.template_version_name}{' (outdated)' if workspace.outdated else ''}"


WORKSPACE_COLUMNS: list[Column] = [
    ("Workspace", lambda w: w.name),
    ("Owner", lambda w: w.owner_name),
    ("Template", lambda w: w.template_name),
    ("Version", _version),
    ("Status", lambda w: w.status),
    ("Last built", lambda w: when(w.latest_build.created_at)),
]


@click.command("list")
@click.option("--all", "-a", "everyone", is_flag=True, help="Everyone's workspaces (admins).")
@with_client
@output_option
def list_workspaces(everyone: bool, client: ApiClient, output: str) -> None:
    """List your workspaces."""
    result = client.call("GET", "/api/v2/workspaces", WorkspaceListResponse,
                         params={"owner": "all" if everyone else None})
    emit(result.workspaces, WORKSPACE_COLUMNS, output)


def masked(workspace: WorkspaceResponse) -> WorkspaceResponse:
    """The workspace with every sensitive metadata value replaced, so `show` never prints a secret."""
    copy = workspace.model_copy(deep=True)
    for resource in copy.latest_build.resources:
        for item in resource.metadata:
            if item.get("sensitive"):
                item["value"] = MASK
    return copy


def _describe_resources(resources: list[ResourceResponse]) -> list[str]:
    lines: list[str] = []
    for resource in resources:
        cost = f" (daily cost {resource.daily_cost})" if resource.daily_cost else ""
        lines.append(f"  {resource.address or resource.type + '.' + resource.name}{cost}")
        lines.extend(f"    {item['key']}: {item['value']}" for item in resource.metadata)
        for agent in resource.agents:
            lines.append(f"    agent {agent.name} ({agent.os}/{agent.arch})")
            lines.extend(f"      app {app.slug}: {app.url or app.command or ''}" for app in agent.apps)
    return lines or ["  none"]


@click.command()
@click.argument("name")
@with_client
@output_option
def show(name: str, client: ApiClient, output: str) -> None:
    """Show a workspace: status, template version, resources, agents and apps (secrets masked)."""
    workspace = masked(resolve_workspace(client, name))
    if output == "json":
        click.echo(json.dumps(workspace.model_dump(mode="json"), indent=2))
        return
    build = workspace.latest_build
    version = workspace.template_version_name
    if workspace.outdated:
        template = client.call("GET", f"/api/v2/templates/{workspace.template_id}", TemplateResponse)
        version += f" (outdated: the active version is {template.active_version_name}; " \
                   f"run 'appliance update {name}')"
    click.echo(f"Workspace:  {workspace.owner_name}/{workspace.name}")
    click.echo(f"Status:     {workspace.status}")
    click.echo(f"Template:   {workspace.template_name} {version}")
    click.echo(f"Last build: #{build.build_number} {build.transition} {build.job.status} at "
               f"{when(build.created_at)} by {build.initiator_name or 'the system'}")
    if build.job.error:
        click.echo(f"Error:      {build.job.error}")
    if workspace.parameters:
        click.echo("Parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(workspace.parameters.items())))
    click.echo("Resources:")
    for line in _describe_resources(build.resources):
        click.echo(line)
