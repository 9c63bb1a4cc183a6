"""/api/v2/files and /api/v2/templates: upload sources, manage templates and their versions."""

from __future__ import annotations

from flask import Response, request

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.logstream import job_logs_response
from appliance.api.spec import endpoint, json_response
from appliance.auth.web import database, request_info, require_subject, server_config
from appliance.errors import InvalidInput
from appliance.responses import template_response, version_response
from appliance.sdk.jobs import LogListResponse, LogsQuery
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
from appliance.templates import service as templates

TAG = "Templates"


@endpoint(v2, "POST", "/files", summary="Upload a template source (a tar archive)", tag=TAG,
          response=FileResponse, status=201, media_type="application/json")
def upload_file() -> Response:
    if request.mimetype not in ("application/x-tar", "application/octet-stream"):
        raise InvalidInput(f"Uploads must be Content-Type application/x-tar, not {request.mimetype or 'none'}.",
                           "Send the tar archive of the template directory as the request body.")
    data = request.get_data(cache=False)
    # No transaction: the archive is checked (bounded, streamed) before its one INSERT, holding no lock meanwhile.
    with database().reading() as conn:
        digest = templates.store_file(conn, require_subject(conn), data)
    return json_response(FileResponse(hash=digest), 201)


@endpoint(v2, "POST", "/templates", summary="Create a template", tag=TAG, body=CreateTemplateRequest,
          response=TemplateResponse, status=201, errors=(409,))
def create_template(body: CreateTemplateRequest) -> Response:
    with authenticated() as (conn, subject):
        template = templates.create_template(conn, subject, request_info(), name=body.name,
                                             display_name=body.display_name, description=body.description,
                                             allowed_roles=body.allowed_roles)
    return json_response(template_response(template), 201)


@endpoint(v2, "GET", "/templates", summary="List templates", tag=TAG, response=TemplateListResponse)
def list_templates() -> Response:
    with authenticated() as (conn, subject):
        found = templates.list_templates(conn, subject)
    return json_response(TemplateListResponse(templates=[template_response(t) for t in found]))


@endpoint(v2, "GET", "/templates/<template>", summary="Get a template", tag=TAG, response=TemplateResponse,
          errors=(404,))
def get_template(template: str) -> Response:
    with authenticated() as (conn, subject):
        found = templates.get_template(conn, subject, template)
    return json_response(template_response(found))


@endpoint(v2, "PATCH", "/templates/<template>", summary="Change a template's name, description or ACL", tag=TAG,
          body=UpdateTemplateRequest, response=TemplateResponse, errors=(404,))
def update_template(template: str, body: UpdateTemplateRequest) -> Response:
    with authenticated() as (conn, subject):
        found = templates.update_template(conn, subject, request_info(), template, display_name=body.display_name,
                                          description=body.description, allowed_roles=body.allowed_roles)
    return json_response(template_response(found))


@endpoint(v2, "DELETE", "/templates/<template>", summary="Delete a template without workspaces", tag=TAG,
          response=MessageResponse, errors=(404, 409))
def delete_template(template: str) -> Response:
    with authenticated() as (conn, subject):
        templates.delete_template(conn, subject, request_info(), template)
    return json_response(MessageResponse(message=f"Template {template} deleted."))


@endpoint(v2, "POST", "/templates/<template>/versions", summary="Add a version (queues its import)", tag=TAG,
          body=CreateVersionRequest, response=VersionResponse, status=201, errors=(404,))
def create_version(template: str, body: CreateVersionRequest) -> Response:
    with authenticated() as (conn, subject):
        version = templates.create_version(conn, subject, request_info(), template, file_hash=body.file_hash,
                                           message=body.message, activate=body.activate,
                                           timeout=server_config().provisioner_job_timeout)
    return json_response(version_response(version), 201)


@endpoint(v2, "GET", "/templates/<template>/versions", summary="List a template's versions", tag=TAG,
          response=VersionListResponse, errors=(404,))
def list_versions(template: str) -> Response:
    with authenticated() as (conn, subject):
        found = templates.list_versions(conn, subject, template)
    return json_response(VersionListResponse(versions=[version_response(v) for v in found]))


@endpoint(v2, "GET", "/templates/<template>/versions/<version>", summary="Get a template version", tag=TAG,
          response=VersionResponse, errors=(404,))
def get_version(template: str, version: str) -> Response:
    with authenticated() as (conn, subject):
        found = templates.get_version(conn, subject, template, version)
    return json_response(version_response(found))


@endpoint(v2, "POST", "/templates/<template>/versions/<version>/promote", summary="Make a version active",
          tag=TAG, response=VersionResponse, errors=(404, 409))
def promote_version(template: str, version: str) -> Response:
    with authenticated() as (conn, subject):
        found = templates.promote(conn, subject, request_info(), template, version)
    return json_response(version_response(found))


@endpoint(v2, "POST", "/templates/<template>/versions/<version>/archive", summary="Archive a version", tag=TAG,
          response=VersionResponse, errors=(404, 409))
def archive_version(template: str, version: str) -> Response:
    with authenticated() as (conn, subject):
        found = templates.set_archived(conn, subject, request_info(), template, version, True)
    return json_response(version_response(found))


@endpoint(v2, "POST", "/templates/<template>/versions/<version>/unarchive", summary="Unarchive a version",
          tag=TAG, response=VersionResponse, errors=(404,))
def unarchive_version(template: str, version: str) -> Response:
    with authenticated() as (conn, subject):
        found = templates.set_archived(conn, subject, request_info(), template, version, False)
    return json_response(version_response(found))


@endpoint(v2, "GET", "/templateversions/<version_id>/logs", summary="Import logs (follow=true streams them)",
          tag=TAG, query=LogsQuery, response=LogListResponse, errors=(404,))
def version_logs(version_id: str, query: LogsQuery) -> Response:
    with authenticated() as (conn, subject):
        version = templates.version_logs_for(conn, subject, version_id)
    return job_logs_response(version.job.id, query.after, query.follow)
