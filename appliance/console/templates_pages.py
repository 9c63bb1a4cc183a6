"""Template pages: the list, and one template's versions, parameters, import logs and push instructions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.auth.rbac import Subject
from appliance.auth.web import request_info, server_config
from appliance.console.blueprint import bp
from appliance.console.builds import by_stage, is_live, job_logs
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.responses import template_response, version_response
from appliance.templates import service as templates


@bp.get("/templates")
@page()
def template_list(conn: Connection, subject: Subject) -> Any:
    found = [template_response(t) for t in templates.list_templates(conn, subject)]
    return render("template_list.html", templates=found, access_url=server_config().access_url)


@bp.get("/templates/<template>")
@page()
def template_detail(conn: Connection, subject: Subject, template: str) -> Any:
    found = template_response(templates.get_template(conn, subject, template))
    versions = sorted((version_response(v) for v in templates.list_versions(conn, subject, template)),
                      key=lambda v: v.number, reverse=True)
    # None: the page leaves the import logs out (the API answers 403 for them) rather than show them empty.
    logs = ({v.id: by_stage(job_logs(conn, UUID(v.job.id))) for v in versions}
            if templates.can_read_import_logs(subject) else None)
    active = next((v for v in versions if v.active), None)
    return render("template_detail.html", template=found, versions=versions, active=active, logs=logs,
                  is_live=is_live, has_live=logs is not None and any(is_live(v.job) for v in versions),
                  access_url=server_config().access_url, api_base=request.script_root + "/api/v2")


def _back(template: str, message: str) -> Response:
    flash(message, "success")
    return redirect(url_for("console.template_detail", template=template))


@bp.post("/templates/<template>/versions/<version>/promote")
@page(back="console.template_detail")
def template_version_promote(conn: Connection, subject: Subject, template: str, version: str) -> Response:
    changed = templates.promote(conn, subject, request_info(), template, version)
    return _back(template, f"{changed.name} is now the active version of {template}.")


@bp.post("/templates/<template>/versions/<version>/archive")
@page(back="console.template_detail")
def template_version_archive(conn: Connection, subject: Subject, template: str, version: str) -> Response:
    changed = templates.set_archived(conn, subject, request_info(), template, version, True)
    return _back(template, f"{changed.name} of {template} is archived: new workspaces cannot use it.")


@bp.post("/templates/<template>/versions/<version>/unarchive")
@page(back="console.template_detail")
def template_version_unarchive(conn: Connection, subject: Subject, template: str, version: str) -> Response:
    changed = templates.set_archived(conn, subject, request_info(), template, version, False)
    return _back(template, f"{changed.name} of {template} is no longer archived.")
