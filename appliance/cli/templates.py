"""`appliance templates push|list|versions|promote|archive|edit|delete`: publish and manage templates."""

from __future__ import annotations

import json
from pathlib import Path

import click

from appliance.cli.builds import LogSource, follow_logs
from appliance.cli.client import ApiClient, with_client
from appliance.cli.output import Column, emit, output_option, when
from appliance.errors import OperatorError
from appliance.sdk.meta import MessageResponse
from appliance.sdk.templates import (
    CreateTemplateRequest,
    CreateVersionRequest,
    FileResponse,
    TemplateListResponse,
    TemplateResponse,
    UpdateTemplateRequest,
    VersionListResponse,
    VersionResponse,
)
from appliance.templates.archive import source_archive, template_files

SITE_ROLES = ("member", "owner", "template-admin", "user-admin", "auditor")


def upload_tar(client: ApiClient, data: bytes) -> str:
    """POST /files with the raw tar; returns its hash."""
    return FileResponse.model_validate(client.upload("/api/v2/files", data, "application/x-tar")).hash


TEMPLATE_COLUMNS: list[Column] = [
    ("Name", lambda t: t.name),
    ("Active version", lambda t: t.active_version_name or "none"),
    ("Workspaces", lambda t: t.workspace_count),
    ("Allowed roles", lambda t: ", ".join(t.allowed_roles)),
    ("Description", lambda t: t.description),
    ("Updated", lambda t: when(t.updated_at)),
]

VERSION_COLUMNS: list[Column] = [
    ("Version", lambda v: v.name),
    ("Active", lambda v: "yes" if v.active else ""),
    ("Archived", lambda v: "yes" if v.archived else ""),
    ("Import", lambda v: v.job.status),
    ("Message", lambda v: v.message),
    ("Created by", lambda v: v.created_by),
    ("Created", lambda v: when(v.created_at)),
    ("Error", lambda v: v.job.error),
]

PARAMETER_COLUMNS: list[Column] = [
    ("Parameter", lambda p: p.name),
    ("Type", lambda p: p.type),
    ("Default", lambda p: "(required)" if p.required else p.default),
    ("Mutable", lambda p: "yes" if p.mutable else ""),
    ("Options", lambda p: ", ".join(o["value"] for o in p.options)),
    ("Description", lambda p: p.description),
]


@click.group()
def templates() -> None:
    """Publish templates and manage their versions (template admins)."""


def _ensure_template(client: ApiClient, name: str) -> TemplateResponse:
    template = client.find(f"/api/v2/templates/{name}", TemplateResponse)
    if template is None:
        template = client.call("POST", "/api/v2/templates", TemplateResponse, body=CreateTemplateRequest(name=name))
        click.echo(f"Created template {name}.", err=True)
    return template


def _report_version(version: VersionResponse) -> None:
    if version.parameters:
        emit(version.parameters, PARAMETER_COLUMNS, "table")
    else:
        click.echo("No parameters.")
    for agent in version.agents:
        apps = ", ".join(a.slug for a in agent.apps) or "no apps"
        click.echo(f"Agent {agent.name} ({agent.os}/{agent.arch}): {apps}")


@templates.command("push")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--name", "-n", default=None, help="Template name (default: the directory's name).")
@click.option("--message", "-m", default="", help="What changed in this version.")
@click.option("--no-activate", is_flag=True, help="Import the version without making it the active one.")
@click.option("--dry-run", is_flag=True, help="List the files a push would upload, and upload nothing.")
@with_client
def push(directory: Path, name: str | None, message: str, no_activate: bool, dry_run: bool,
         client: ApiClient) -> None:
    """Upload DIRECTORY as a new template version, import it, and follow the import's logs."""
    name = name or directory.resolve().name
    if dry_run:
        for source in template_files(directory):
            click.echo(f"{source.size:>10}  {source.name}")
        click.echo(f"{len(source_archive(directory))} bytes as a tar; nothing uploaded.", err=True)
        return
    file_hash = upload_tar(client, source_archive(directory))
    template = _ensure_template(client, name)
    version = client.call("POST", f"/api/v2/templates/{name}/versions", VersionResponse,
                          body=CreateVersionRequest(file_hash=file_hash, message=message, activate=not no_activate))
    version_path = f"/api/v2/templates/{template.id}/versions/{version.id}"
    click.echo(f"Importing {name} {version.name}:", err=True)
    status = follow_logs(client, LogSource(
        logs_path=f"/api/v2/templateversions/{version.id}/logs",
        job_status=lambda: client.call("GET", version_path, VersionResponse).job.status,
        resume=f"See how it ends with 'appliance templates versions {name}'."))
    version = client.call("GET", version_path, VersionResponse)
    active = client.call("GET", f"/api/v2/templates/{template.id}", TemplateResponse).active_version_name
    if status != "succeeded":
        raise OperatorError(
            f"The import of {name} {version.name} {status}: {version.job.error or 'see the logs above'}",
            f"The active version is still {active}." if active else f"{name} has no active version yet.")
    state = "it is the active version" if active == version.name else f"the active version is still {active}"
    click.echo(f"Imported {name} {version.name}; {state}.")
    _report_version(version)


@templates.command("list")
@with_client
@output_option
def list_templates(client: ApiClient, output: str) -> None:
    """List templates."""
    result = client.call("GET", "/api/v2/templates", TemplateListResponse).templates
    emit(result, TEMPLATE_COLUMNS, output)


@templates.command("versions")
@click.argument("name")
@with_client
@output_option
def versions(name: str, client: ApiClient, output: str) -> None:
    """List a template's versions and how their imports went."""
    result = client.call("GET", f"/api/v2/templates/{name}/versions", VersionListResponse).versions
    emit(result, VERSION_COLUMNS, output)


@templates.command("show")
@click.argument("name")
@click.argument("version", required=False)
@with_client
@output_option
def show(name: str, version: str | None, client: ApiClient, output: str) -> None:
    """Show a template version's parameters and agents (default: the active version)."""
    if version is None:
        version = client.call("GET", f"/api/v2/templates/{name}", TemplateResponse).active_version_id
        if not version:
            raise OperatorError(f"{name} has no active version.", f"Push one with 'appliance templates push DIR "
                                                                  f"--name {name}'.")
    found = client.call("GET", f"/api/v2/templates/{name}/versions/{version}", VersionResponse)
    if output == "json":
        click.echo(json.dumps(found.model_dump(mode="json"), indent=2))
        return
    click.echo(f"{name} {found.name}: import {found.job.status}"
               f"{' (active)' if found.active else ''}{' (archived)' if found.archived else ''}")
    _report_version(found)


def _version_action(name: str, version: str, action: str, client: ApiClient) -> VersionResponse:
    return client.call("POST", f"/api/v2/templates/{name}/versions/{version}/{action}", VersionResponse)


@templates.command("promote")
@click.argument("name")
@click.argument("version")
@with_client
def promote(name: str, version: str, client: ApiClient) -> None:
    """Make VERSION (e.g. v3) the active version: new workspaces and updates use it."""
    _version_action(name, version, "promote", client)
    click.echo(f"{name} {version} is the active version.")


@templates.command("archive")
@click.argument("name")
@click.argument("version")
@with_client
def archive(name: str, version: str, client: ApiClient) -> None:
    """Archive VERSION: no new build may choose it; workspaces already on it keep working.

    The active version cannot be archived."""
    _version_action(name, version, "archive", client)
    click.echo(f"{name} {version} is archived.")


@templates.command("unarchive")
@click.argument("name")
@click.argument("version")
@with_client
def unarchive(name: str, version: str, client: ApiClient) -> None:
    """Make an archived VERSION usable again."""
    _version_action(name, version, "unarchive", client)
    click.echo(f"{name} {version} is no longer archived.")


@templates.command("edit")
@click.argument("name")
@click.option("--allowed-role", "allowed_roles", multiple=True, type=click.Choice(SITE_ROLES),
              help="Site role allowed to create workspaces from it; repeat for several ('member' = everyone).")
@click.option("--description", default=None)
@click.option("--display-name", default=None)
@with_client
@output_option
def edit(name: str, allowed_roles: tuple[str, ...], description: str | None, display_name: str | None,
         client: ApiClient, output: str) -> None:
    """Change a template's description, display name, or who may create workspaces from it."""
    given = {"description": description, "display_name": display_name, "allowed_roles": list(allowed_roles) or None}
    change = UpdateTemplateRequest.model_validate({k: v for k, v in given.items() if v is not None})
    if not change.model_fields_set:
        raise click.UsageError("Give at least one of --allowed-role, --description, --display-name.")
    # Only the fields given: an absent field is left as it is, where null could read as "clear it".
    result = client.call("PATCH", f"/api/v2/templates/{name}", TemplateResponse,
                         body=change.model_dump(mode="json", exclude_unset=True))
    emit([result], TEMPLATE_COLUMNS, output, raw=result)


@templates.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@with_client
def delete(name: str, yes: bool, client: ApiClient) -> None:
    """Delete a template that no workspace uses."""
    if not yes:
        click.confirm(f"Delete template {name} and all its versions?", abort=True, err=True)
    client.call("DELETE", f"/api/v2/templates/{name}", MessageResponse)
    click.echo(f"Deleted template {name}.")
