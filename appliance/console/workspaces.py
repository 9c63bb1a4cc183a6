"""Workspace pages: the list, the create form built from template parameters, and one workspace's
status, builds, resources and live logs with the actions its status allows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.auth.rbac import Subject
from appliance.auth.web import request_info, server_config
from appliance.console.agents import agent_panels
from appliance.console.blueprint import bp
from appliance.console.builds import allowed_actions, by_stage, is_live, job_logs
from appliance.console.pages import can, page, render
from appliance.db.database import Connection
from appliance.errors import RequestError
from appliance.responses import (
    build_response,
    connection_response,
    job_response,
    template_response,
    workspace_response,
)
from appliance.templates import service as templates
from appliance.templates.starter import SUGGESTED
from appliance.workspaces import service as workspaces
from appliance.workspaces.apps import app_links
from appliance.workspaces.connections import list_connections

# How the page names what a build button did.
DONE = {"start": "Starting", "stop": "Stopping", "delete": "Deleting"}


# -- list ------------------------------------------------------------------------------------------


@bp.get("/workspaces")
@page()
def workspace_list(conn: Connection, subject: Subject) -> Any:
    sees_all = can("read", "workspace")  # site-wide read: owners and template admins
    scope = "all" if sees_all and request.args.get("owner") == "all" else "me"
    found = [workspace_response(w) for w in workspaces.list_workspaces(conn, subject, owner=scope)]
    return render("workspace_list.html", workspaces=found, scope=scope, sees_all=sees_all)


# -- create ----------------------------------------------------------------------------------------


def _field_of(error: RequestError, parameters: Sequence[Mapping[str, Any]]) -> str:
    """Which form field a refusal is about: 'name', a parameter's name, or '' for the form as a whole."""
    field = (error.field or "").removeprefix("parameters.")
    names = {p["name"] for p in parameters}
    return field if field in names or field == "name" else ""


def _submitted_values(parameters: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The parameter values as the service takes them: strings, lists as JSON, booleans true/false."""
    values: dict[str, str] = {}
    for p in parameters:
        key = f"parameter.{p['name']}"
        if p["type"] == "bool":
            values[p["name"]] = "true" if request.form.get(key) else "false"
        elif p["type"] == "list(string)":
            items = (request.form.getlist(key) if p.get("options")
                     else request.form.get(key, "").splitlines())
            values[p["name"]] = json.dumps([item.strip() for item in items if item.strip()])
        else:
            values[p["name"]] = request.form.get(key, "")
    return values


def _given(parameters: Sequence[Mapping[str, Any]], values: dict[str, str]) -> dict[str, str]:
    """Leave out empty answers to parameters without a default, so the service says they are required."""
    return {name: value for name, value in values.items()
            if value != "" or _default(next(p for p in parameters if p["name"] == name)) is not None}


def _default(parameter: Mapping[str, Any]) -> str | None:
    default = parameter.get("default")
    return None if default is None or parameter.get("required") else str(default)


def _initial_values(parameters: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {p["name"]: _default(p) or "" for p in parameters}


def _create_form(conn: Connection, subject: Subject, chosen: str, status: int = 200, *,
                 name: str = "", values: dict[str, str] | None = None, error: RequestError | None = None) -> Any:
    usable = [template_response(t) for t in templates.list_templates(conn, subject) if t.active_version_id]
    usable.sort(key=lambda t: t.name != SUGGESTED)  # stable: the rest keep their order
    if not chosen and (len(usable) == 1 or (usable and usable[0].name == SUGGESTED)):
        chosen = usable[0].name
    template = next((t for t in usable if chosen in (t.name, t.id)), None)
    parameters: Sequence[Mapping[str, Any]] = []
    if template is not None and template.active_version_id:
        parameters = templates.get_version(conn, subject, template.name, template.active_version_id).parameters
    field = _field_of(error, parameters) if error else ""
    return render("workspace_create.html", status, templates=usable, template=template, chosen=chosen,
                  parameters=parameters, name=name,
                  values=values if values is not None else _initial_values(parameters),
                  error=error, error_field=field, list_items=_list_items)


def _list_items(value: str) -> list[str]:
    """A list(string) value (JSON) as its items, for the form to show one per line or as selected."""
    try:
        items = json.loads(value) if value else []
    except ValueError:
        return [value]
    return [str(item) for item in items] if isinstance(items, list) else [str(items)]


@bp.get("/workspaces/new")
@page()
def workspace_new(conn: Connection, subject: Subject) -> Any:
    return _create_form(conn, subject, request.args.get("template", ""))


@bp.post("/workspaces/new")
@page(back="console.workspace_new")
def workspace_create(conn: Connection, subject: Subject) -> Any:
    chosen = request.form.get("template", "")
    name = request.form.get("name", "").strip()
    template = templates.get_template(conn, subject, chosen)
    parameters = (templates.get_version(conn, subject, template.name, str(template.active_version_id)).parameters
                  if template.active_version_id else [])
    shown = _submitted_values(parameters)
    try:
        with conn.transaction():  # a savepoint: a refusal leaves nothing behind, the form is shown again
            created = workspaces.create_workspace(
                conn, subject, request_info(), template_ref=template.name, name=name,
                parameters=_given(parameters, shown), timeout=server_config().provisioner_job_timeout)
    except RequestError as err:
        return _create_form(conn, subject, template.name, err.status, name=name, values=shown, error=err)
    flash(f"Workspace {created.name} created: its first build is queued.", "success")
    return redirect(url_for("console.workspace_detail", workspace_id=created.id))


# -- one workspace ---------------------------------------------------------------------------------


@bp.get("/workspaces/<workspace_id>")
@page()
def workspace_detail(conn: Connection, subject: Subject, workspace_id: str) -> Any:
    found = workspaces.find_workspace(conn, subject, workspace_id)
    latest = found.latest_build
    workspace = workspace_response(found, workspaces.resources(conn, latest))
    builds = [build_response(b) for b in workspaces.list_builds(conn, subject, workspace_id)]
    return render("workspace_detail.html", workspace=workspace, builds=builds, latest=workspace.latest_build,
                  logs=by_stage(job_logs(conn, latest.job.id)),
                  agents=agent_panels(conn, workspace.latest_build.resources),
                  apps_by_agent={a.id: a.apps for r in workspace.latest_build.resources for a in r.agents},
                  actions=allowed_actions(found.status, is_outdated=found.outdated),
                  apps=app_links(conn, latest.job.id, found.owner_name, found.name),
                  connections=[connection_response(r) for r in list_connections(conn, subject, workspace_id)],
                  is_live=is_live(job_response(latest.job)), api_base=request.script_root + "/api/v2",
                  cli_ref=found.name if found.owner_id == subject.user_id else f"{workspace.owner_name}/{found.name}")


def _build(conn: Connection, subject: Subject, workspace_id: str, transition: str) -> Response:
    build = workspaces.create_build(conn, subject, request_info(), workspace_id, transition=transition,
                                    timeout=server_config().provisioner_job_timeout)
    flash(f"{DONE[transition]}: build #{build.build_number} is queued.", "success")
    return redirect(url_for("console.workspace_detail", workspace_id=workspace_id))


@bp.post("/workspaces/<workspace_id>/start")
@page(back="console.workspace_detail")
def workspace_start(conn: Connection, subject: Subject, workspace_id: str) -> Response:
    return _build(conn, subject, workspace_id, "start")


@bp.post("/workspaces/<workspace_id>/stop")
@page(back="console.workspace_detail")
def workspace_stop(conn: Connection, subject: Subject, workspace_id: str) -> Response:
    return _build(conn, subject, workspace_id, "stop")


@bp.post("/workspaces/<workspace_id>/delete")
@page(back="console.workspace_detail")
def workspace_delete(conn: Connection, subject: Subject, workspace_id: str) -> Response:
    return _build(conn, subject, workspace_id, "delete")


@bp.post("/workspaces/<workspace_id>/update")
@page(back="console.workspace_detail")
def workspace_update(conn: Connection, subject: Subject, workspace_id: str) -> Response:
    build = workspaces.update_workspace(conn, subject, request_info(), workspace_id,
                                        timeout=server_config().provisioner_job_timeout)
    flash(f"Updating to {build.template_version_name}: build #{build.build_number} is queued.", "success")
    return redirect(url_for("console.workspace_detail", workspace_id=workspace_id))


@bp.post("/workspaces/<workspace_id>/cancel")
@page(back="console.workspace_detail")
def workspace_cancel(conn: Connection, subject: Subject, workspace_id: str) -> Response:
    latest = workspaces.find_workspace(conn, subject, workspace_id).latest_build
    workspaces.cancel_build(conn, subject, request_info(), str(latest.id))
    flash(f"Canceling build #{latest.build_number}.", "success")
    return redirect(url_for("console.workspace_detail", workspace_id=workspace_id))
