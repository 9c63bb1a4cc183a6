"""/api/v2/workspaces and /api/v2/workspacebuilds: create workspaces, build them, follow the builds."""

from __future__ import annotations

from uuid import UUID

from flask import Response

from appliance.api.blueprints import v2
from appliance.api.context import authenticated
from appliance.api.logstream import job_logs_response
from appliance.api.spec import endpoint, json_response
from appliance.auth.web import request_info, server_config
from appliance.db.database import Connection
from appliance.errors import InvalidInput
from appliance.responses import build_response, connection_response, workspace_response
from appliance.sdk.jobs import LogListResponse, LogsQuery
from appliance.sdk.workspaces import (
    BuildListResponse,
    BuildResponse,
    ConnectionListResponse,
    ConnectionsQuery,
    CreateBuildRequest,
    CreateWorkspaceRequest,
    UpdateWorkspaceRequest,
    WorkspaceListResponse,
    WorkspaceResponse,
    WorkspacesQuery,
)
from appliance.workspaces import service as workspaces
from appliance.workspaces.connections import list_connections

TAG = "Workspaces"


def _workspace_json(conn: Connection, workspace: workspaces.Workspace) -> WorkspaceResponse:
    return workspace_response(workspace, workspaces.resources(conn, workspace.latest_build))


def _build_json(conn: Connection, build: workspaces.Build) -> BuildResponse:
    return build_response(build, workspaces.resources(conn, build))


def _version_id(raw: str | None) -> UUID | None:
    if raw is None:
        return None
    try:
        return UUID(raw)
    except ValueError as err:
        raise InvalidInput(f"Invalid template_version_id {raw!r}.", "Give a version id.",
                           field="template_version_id") from err


@endpoint(v2, "POST", "/workspaces", summary="Create a workspace (queues its first build)", tag=TAG,
          body=CreateWorkspaceRequest, response=WorkspaceResponse, status=201, errors=(404, 409))
def create_workspace(body: CreateWorkspaceRequest) -> Response:
    with authenticated() as (conn, subject):
        created = workspaces.create_workspace(conn, subject, request_info(), template_ref=body.template,
                                              name=body.name, parameters=body.parameters, owner_ref=body.owner,
                                              timeout=server_config().provisioner_job_timeout)
        payload = _workspace_json(conn, created)
    return json_response(payload, 201)


@endpoint(v2, "GET", "/workspaces", summary="List workspaces", tag=TAG, query=WorkspacesQuery,
          response=WorkspaceListResponse)
def list_workspaces(query: WorkspacesQuery) -> Response:
    with authenticated() as (conn, subject):
        found = workspaces.list_workspaces(conn, subject, owner=query.owner, name=query.name)
        payload = [_workspace_json(conn, w) for w in found]
    return json_response(WorkspaceListResponse(workspaces=payload))


@endpoint(v2, "GET", "/workspaces/<workspace>", summary="Get a workspace (id, or one of your names)", tag=TAG,
          response=WorkspaceResponse, errors=(404,))
def get_workspace(workspace: str) -> Response:
    with authenticated() as (conn, subject):
        payload = _workspace_json(conn, workspaces.find_workspace(conn, subject, workspace))
    return json_response(payload)


@endpoint(v2, "POST", "/workspaces/<workspace>/builds", summary="Start, stop or delete a workspace", tag=TAG,
          body=CreateBuildRequest, response=BuildResponse, status=201, errors=(404, 409))
def create_build(workspace: str, body: CreateBuildRequest) -> Response:
    with authenticated() as (conn, subject):
        build = workspaces.create_build(conn, subject, request_info(), workspace, transition=body.transition,
                                        timeout=server_config().provisioner_job_timeout,
                                        version_id=_version_id(body.template_version_id),
                                        parameters=body.parameters)
        payload = _build_json(conn, build)
    return json_response(payload, 201)


@endpoint(v2, "POST", "/workspaces/<workspace>/update", summary="Rebuild on the template's active version",
          tag=TAG, body=UpdateWorkspaceRequest, response=BuildResponse, status=201, errors=(404, 409))
def update_workspace(workspace: str, body: UpdateWorkspaceRequest) -> Response:
    with authenticated() as (conn, subject):
        build = workspaces.update_workspace(conn, subject, request_info(), workspace,
                                            timeout=server_config().provisioner_job_timeout,
                                            parameters=body.parameters)
        payload = _build_json(conn, build)
    return json_response(payload, 201)


@endpoint(v2, "GET", "/workspaces/<workspace>/builds", summary="A workspace's build history", tag=TAG,
          response=BuildListResponse, errors=(404,))
def list_builds(workspace: str) -> Response:
    with authenticated() as (conn, subject):
        payload = [_build_json(conn, b) for b in workspaces.list_builds(conn, subject, workspace)]
    return json_response(BuildListResponse(builds=payload))


@endpoint(v2, "GET", "/workspaces/<workspace>/connections", tag=TAG, query=ConnectionsQuery,
          summary="The connection audit: who opened which session to the workspace's agents, when, bytes each way",
          response=ConnectionListResponse, errors=(404,))
def workspace_connections(workspace: str, query: ConnectionsQuery) -> Response:
    with authenticated() as (conn, subject):
        rows = list_connections(conn, subject, workspace, query.limit)
    return json_response(ConnectionListResponse(connections=[connection_response(r) for r in rows]))


@endpoint(v2, "GET", "/workspacebuilds/<build>", summary="Get a build", tag=TAG, response=BuildResponse,
          errors=(404,))
def get_build(build: str) -> Response:
    with authenticated() as (conn, subject):
        payload = _build_json(conn, workspaces.get_build(conn, subject, build))
    return json_response(payload)


@endpoint(v2, "POST", "/workspacebuilds/<build>/cancel", summary="Cancel a pending or running build", tag=TAG,
          response=BuildResponse, errors=(404, 409))
def cancel_build(build: str) -> Response:
    with authenticated() as (conn, subject):
        payload = _build_json(conn, workspaces.cancel_build(conn, subject, request_info(), build))
    return json_response(payload)


@endpoint(v2, "GET", "/workspacebuilds/<build>/logs", summary="Build logs (follow=true streams them)", tag=TAG,
          query=LogsQuery, response=LogListResponse, errors=(404,))
def build_logs(build: str, query: LogsQuery) -> Response:
    with authenticated() as (conn, subject):
        found = workspaces.get_build(conn, subject, build)
    return job_logs_response(found.job.id, query.after, query.follow)


@endpoint(v2, "GET", "/workspacebuilds/<build>/state", summary="The Terraform state a build left", tag=TAG,
          errors=(404,), media_type="application/json")
def build_state(build: str) -> Response:
    with authenticated() as (conn, subject):
        state = workspaces.build_state(conn, subject, build)
    return Response(state, mimetype="application/json")
