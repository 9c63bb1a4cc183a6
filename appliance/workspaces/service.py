"""Workspaces and their builds: create, start, stop, delete, update, cancel, and what a build left.

A workspace is changed only by builds, one at a time: a second build while one is queued or
running is a 409. The workspace row is locked while a build is added, so two requests cannot
both slip past that check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from appliance.audit.record import RequestInfo, record
from appliance.auth.rbac import OWNER, TEMPLATE_ADMIN, Action, Resource, ResourceType, Subject, authorize, is_allowed
from appliance.auth.users import find_user, get_user
from appliance.db.database import Connection, Row
from appliance.errors import Conflict, Forbidden, InvalidInput, NotFound
from appliance.provisioner import jobs
from appliance.templates import parameters as params
from appliance.templates import service as templates
from appliance.workspaces.agent_status import ConnectionTimes, connection_status
from appliance.workspaces.status import TRANSITIONS, build_status

NAME_RULE = templates.NAME_RULE

_WORKSPACE_SELECT = (
    "SELECT w.*, u.username AS owner_name, t.name AS template_name, t.active_version_id,"
    " (SELECT id FROM workspace_builds WHERE workspace_id = w.id ORDER BY build_number DESC LIMIT 1) AS build_id"
    " FROM workspaces w JOIN users u ON u.id = w.owner_id JOIN templates t ON t.id = w.template_id")
_BUILD_SELECT = (
    "SELECT b.*, j.canceled_at, j.completed_at, j.started_at, j.error, j.type, j.timeout_seconds,"
    " j.created_at AS job_created_at, i.username AS initiator_name, v.number AS version_number"
    " FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id"
    " JOIN template_versions v ON v.id = b.template_version_id LEFT JOIN users i ON i.id = b.initiator_id")


@dataclass(frozen=True)
class Build:
    id: UUID
    workspace_id: UUID
    build_number: int
    transition: str
    job: jobs.Job
    initiator_name: str
    template_version_id: UUID
    template_version_name: str
    parameters: dict[str, str]
    created_at: datetime

    @property
    def status(self) -> str:
        return build_status(self.transition, self.job.status)



@dataclass(frozen=True)
class Workspace:
    id: UUID
    name: str
    owner_id: UUID
    owner_name: str
    template_id: UUID
    template_name: str
    active_version_id: UUID | None
    latest_build: Build
    created_at: datetime
    updated_at: datetime

    @property
    def resource(self) -> Resource:
        return Resource(ResourceType.WORKSPACE, owner_id=self.owner_id)

    @property
    def status(self) -> str:
        return self.latest_build.status

    @property
    def outdated(self) -> bool:
        return self.active_version_id is not None and self.latest_build.template_version_id != self.active_version_id



def _build(row: Row) -> Build:
    job = jobs.Job.from_row({**row, "id": row["job_id"], "created_at": row["job_created_at"]})
    return Build(row["id"], row["workspace_id"], row["build_number"], row["transition"], job,
                 row["initiator_name"] or "", row["template_version_id"], f"v{row['version_number']}",
                 dict(row["parameters"]), row["created_at"])


def _builds(conn: Connection, where: str, args: tuple[Any, ...], limit: int | None = None) -> list[Build]:
    tail = " ORDER BY b.build_number DESC" + (f" LIMIT {int(limit)}" if limit else "")
    rows = conn.execute(_BUILD_SELECT + " WHERE " + where + tail, args).fetchall()
    return [_build(r) for r in rows]


def _latest_build(conn: Connection, workspace_id: UUID) -> Build:
    return _builds(conn, "b.workspace_id = %s", (workspace_id,), limit=1)[0]


def _workspaces(conn: Connection, rows: list[Row]) -> list[Workspace]:
    """Workspaces with their latest builds, read in one query however many there are."""
    latest = {b.id: b for b in _builds(conn, "b.id = ANY(%s)", ([r["build_id"] for r in rows],))}
    return [Workspace(row["id"], row["name"], row["owner_id"], row["owner_name"], row["template_id"],
                      row["template_name"], row["active_version_id"], latest[row["build_id"]], row["created_at"],
                      row["updated_at"]) for row in rows]


def _not_found(ref: str) -> NotFound:
    return NotFound(f"Workspace {ref!r} does not exist.", "List your workspaces with `appliance list`.")


def find_workspace(conn: Connection, subject: Subject, ref: str, *, include_deleted: bool = False) -> Workspace:
    """By id, or by name among the subject's own workspaces. Unreadable ones look missing."""
    live = "" if include_deleted else " AND w.deleted_at IS NULL"
    try:
        row = conn.execute(_WORKSPACE_SELECT + " WHERE w.id = %s" + live, (UUID(ref),)).fetchone()
    except ValueError:
        row = conn.execute(_WORKSPACE_SELECT + " WHERE w.owner_id = %s AND w.name = %s AND w.deleted_at IS NULL",
                           (subject.user_id, ref)).fetchone()
    if row is None:
        raise _not_found(ref)
    workspace = _workspaces(conn, [row])[0]
    if not is_allowed(subject, Action.READ, workspace.resource):
        raise _not_found(ref)
    return workspace


def list_workspaces(conn: Connection, subject: Subject, *, owner: str = "", name: str = "") -> list[Workspace]:
    """The subject's own workspaces; with owner='all' (or a username) every readable one."""
    clauses: list[str] = ["w.deleted_at IS NULL"]
    args: list[Any] = []
    if not owner or owner == "me":
        clauses.append("w.owner_id = %s")
        args.append(subject.user_id)
    elif owner != "all":
        user = find_user(conn, owner, actor=subject)
        if user is None:
            return []
        clauses.append("w.owner_id = %s")
        args.append(user.id)
    if name:
        clauses.append("w.name = %s")
        args.append(name)
    rows = conn.execute(_WORKSPACE_SELECT + " WHERE " + " AND ".join(clauses) + " ORDER BY u.username, w.name",
                        tuple(args)).fetchall()
    return [w for w in _workspaces(conn, rows) if is_allowed(subject, Action.READ, w.resource)]


def _check_template_acl(subject: Subject, template: templates.Template) -> None:
    if subject.roles & {OWNER, TEMPLATE_ADMIN} or subject.roles & set(template.allowed_roles):
        return
    raise Forbidden(f"You may not create workspaces from template {template.name!r}.",
                    f"It is open to: {', '.join(template.allowed_roles)}. Ask a template admin for access.")


def _usable_version(conn: Connection, template: templates.Template, version_id: UUID | None) -> templates.Version:
    chosen = version_id or template.active_version_id
    if chosen is None:
        raise Conflict(f"Template {template.name!r} has no active version yet.",
                       "Wait for its first import to succeed, or push a version that imports.")
    version = templates.find_version(conn, template, str(chosen))
    if version.job.status is not jobs.JobStatus.SUCCEEDED:
        raise Conflict(f"{template.name} {version.name} did not import successfully.", "Use the active version.")
    if version.archived:
        raise Conflict(f"{template.name} {version.name} is archived.",
                       "Use the active version, or ask a template admin to unarchive this one.")
    return version


def create_workspace(conn: Connection, subject: Subject, info: RequestInfo, *, template_ref: str, name: str,
                     parameters: dict[str, str], owner_ref: str = "me", timeout: timedelta) -> Workspace:
    if not NAME_RULE.fullmatch(name):
        raise InvalidInput(f"Invalid workspace name {name!r}.",
                           "Use 1-32 lowercase letters, digits and inner hyphens (it becomes part of host names).",
                           field="name")
    # An owner one may not read is as missing as an unknown one: the same 404 tells nothing.
    owner = get_user(conn, subject, owner_ref)
    authorize(subject, Action.CREATE, Resource(ResourceType.WORKSPACE, owner_id=owner.id))
    template = templates.get_template(conn, subject, template_ref)
    _check_template_acl(subject, template)
    version = _usable_version(conn, template, None)
    values = params.resolve(version.parameters, parameters)
    try:
        with conn.transaction():
            row = conn.execute("INSERT INTO workspaces (owner_id, template_id, name) VALUES (%s, %s, %s) RETURNING id",
                               (owner.id, template.id, name)).fetchone()
    except pg_errors.UniqueViolation as err:
        raise Conflict(f"{owner.username} already has a workspace named {name!r}.", "Choose another name.",
                       field="name") from err
    assert row is not None
    _insert_build(conn, subject, row["id"], "start", version.id, values, timeout)
    record(conn, actor=subject, action="create", resource_type="workspace", resource_id=row["id"],
           target=f"{owner.username}/{name}", status=201, info=info,
           diff={"template": {"old": None, "new": template.name, "secret": False}})
    return find_workspace(conn, subject, str(row["id"]))


def _insert_build(conn: Connection, subject: Subject, workspace_id: UUID, transition: str, version_id: UUID,
                  values: dict[str, str], timeout: timedelta) -> UUID:
    job_id = jobs.enqueue(conn, jobs.JobType.BUILD, initiator_id=subject.user_id, timeout=timeout)
    row = conn.execute(
        "INSERT INTO workspace_builds (workspace_id, build_number, transition, template_version_id, job_id,"
        " initiator_id, parameters)"
        " SELECT %s, coalesce(max(build_number), 0) + 1, %s, %s, %s, %s, %s FROM workspace_builds"
        " WHERE workspace_id = %s RETURNING id",
        (workspace_id, transition, version_id, job_id, subject.user_id, Jsonb(values), workspace_id)).fetchone()
    conn.execute("UPDATE workspaces SET updated_at = now() WHERE id = %s", (workspace_id,))
    assert row is not None
    return UUID(str(row["id"]))


def create_build(conn: Connection, subject: Subject, info: RequestInfo, ref: str, *, transition: str,
                 timeout: timedelta, version_id: UUID | None = None,
                 parameters: dict[str, str] | None = None) -> Build:
    """Queue a start, stop or delete of a workspace; 409 while another build of it is unfinished."""
    if transition not in TRANSITIONS:
        raise InvalidInput(f"Invalid transition {transition!r}.", "Use start, stop or delete.", field="transition")
    workspace = find_workspace(conn, subject, ref)
    action = Action.DELETE if transition == "delete" else Action.UPDATE
    authorize(subject, action, workspace.resource)
    conn.execute("SELECT id FROM workspaces WHERE id = %s FOR UPDATE", (workspace.id,))
    latest = _latest_build(conn, workspace.id)  # read again under the lock
    if not latest.job.finished:
        raise Conflict(f"Workspace {workspace.name!r} is {latest.status}: build #{latest.build_number} is not "
                       "finished.", "Wait for it to finish, or cancel it (`appliance builds cancel`), then try again.")
    template = templates.find_template(conn, str(workspace.template_id))
    version = (_usable_version(conn, template, version_id) if version_id
               else templates.version_by_id(conn, latest.template_version_id))
    values = params.resolve(version.parameters, parameters or {}, previous=latest.parameters)
    build_id = _insert_build(conn, subject, workspace.id, transition, version.id, values, timeout)
    record(conn, actor=subject, action=transition, resource_type="workspace_build", resource_id=build_id,
           target=f"{workspace.owner_name}/{workspace.name}", status=201, info=info,
           diff={"template_version": {"old": latest.template_version_name, "new": version.name, "secret": False}})
    return get_build(conn, subject, build_id)


def update_workspace(conn: Connection, subject: Subject, info: RequestInfo, ref: str, *, timeout: timedelta,
                     parameters: dict[str, str] | None = None) -> Build:
    """Rebuild (start) the workspace on its template's active version."""
    workspace = find_workspace(conn, subject, ref)
    if workspace.active_version_id is None:
        raise Conflict(f"Template {workspace.template_name!r} has no active version.", "")
    return create_build(conn, subject, info, str(workspace.id), transition="start", timeout=timeout,
                        version_id=workspace.active_version_id, parameters=parameters or {})


def get_build(conn: Connection, subject: Subject, build_id: UUID | str) -> Build:
    try:
        found = _builds(conn, "b.id = %s", (UUID(str(build_id)),))
    except ValueError:
        found = []
    missing = NotFound(f"Build {build_id} does not exist.", "See `appliance builds list WORKSPACE`.")
    if not found:
        raise missing
    try:
        find_workspace(conn, subject, str(found[0].workspace_id), include_deleted=True)
    except NotFound as err:  # someone else's build looks missing, and names no workspace id
        raise missing from err
    return found[0]


def list_builds(conn: Connection, subject: Subject, ref: str) -> list[Build]:
    workspace = find_workspace(conn, subject, ref)
    return _builds(conn, "b.workspace_id = %s", (workspace.id,))


def cancel_build(conn: Connection, subject: Subject, info: RequestInfo, build_id: str) -> Build:
    build = get_build(conn, subject, build_id)
    workspace = find_workspace(conn, subject, str(build.workspace_id), include_deleted=True)
    authorize(subject, Action.UPDATE, workspace.resource)
    if jobs.request_cancel(conn, build.job.id) is None:
        raise Conflict(f"Build #{build.build_number} is {build.status}; only a pending or running build can be "
                       "canceled.", "")
    record(conn, actor=subject, action="cancel", resource_type="workspace_build", resource_id=build.id,
           target=f"{workspace.owner_name}/{workspace.name}", info=info)
    return get_build(conn, subject, build.id)


def build_for_job(conn: Connection, job_id: UUID) -> Build | None:
    found = _builds(conn, "b.job_id = %s", (job_id,))
    return found[0] if found else None


def previous_state(conn: Connection, build: Build) -> bytes | None:
    """The state the build starts from: the newest earlier build that recorded one."""
    row = conn.execute(
        "SELECT state FROM workspace_builds WHERE workspace_id = %s AND build_number < %s AND state IS NOT NULL"
        " ORDER BY build_number DESC LIMIT 1", (build.workspace_id, build.build_number)).fetchone()
    return bytes(row["state"]) if row else None


def save_state(conn: Connection, job_id: UUID, chunks: Iterable[bytes | memoryview]) -> None:
    """Store a build's state as it arrives: COPY takes one chunk at a time, PostgreSQL joins them.

    So a state of any size is never held whole in this process, let alone twice (as bytes and as
    the hex text of a bytea parameter).
    """
    conn.execute("CREATE TEMP TABLE state_upload (n integer, chunk bytea) ON COMMIT DROP")
    with conn.cursor() as cur, cur.copy("COPY state_upload (n, chunk) FROM STDIN") as copy:
        for n, chunk in enumerate(chunks):
            copy.write_row((n, chunk))
    conn.execute("UPDATE workspace_builds SET state = (SELECT coalesce(string_agg(chunk, '' ORDER BY n), '')"
                 " FROM state_upload) WHERE job_id = %s", (job_id,))
    conn.execute("DROP TABLE state_upload")


def job_state(conn: Connection, job_id: UUID) -> bytes | None:
    """The state the daemon running this build last saved."""
    row = conn.execute("SELECT state FROM workspace_builds WHERE job_id = %s", (job_id,)).fetchone()
    return None if row is None or row["state"] is None else bytes(row["state"])


def build_state(conn: Connection, subject: Subject, build_id: str) -> bytes:
    build = get_build(conn, subject, build_id)
    workspace = find_workspace(conn, subject, str(build.workspace_id), include_deleted=True)
    # The state holds agent tokens: only those who may change the template may read it.
    authorize(subject, Action.UPDATE, Resource(ResourceType.TEMPLATE))
    row = conn.execute("SELECT state FROM workspace_builds WHERE id = %s", (build.id,)).fetchone()
    if row is None or row["state"] is None:
        raise NotFound(f"Build #{build.build_number} of {workspace.name} recorded no state.", "")
    return bytes(row["state"])


def live_workspace_ids(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Those of `ids` that name a workspace not deleted (strings that are no UUID name none)."""
    wanted = [str(parsed) for value in ids if (parsed := _as_uuid(value)) is not None]
    rows = conn.execute("SELECT id::text AS id FROM workspaces WHERE id = ANY(%s::uuid[]) AND deleted_at IS NULL",
                        (wanted,)).fetchall()
    return {row["id"] for row in rows}


def _as_uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def mark_deleted(conn: Connection, build: Build) -> None:
    conn.execute("UPDATE workspaces SET deleted_at = now(), updated_at = now() WHERE id = %s AND deleted_at IS NULL",
                 (build.workspace_id,))


def resources(conn: Connection, build: Build) -> list[dict[str, Any]]:
    """What the build left standing, agents and apps included; sensitive metadata values masked."""
    rows = conn.execute("SELECT * FROM workspace_resources WHERE job_id = %s ORDER BY address",
                        (build.job.id,)).fetchall()
    agents = conn.execute("SELECT a.* FROM workspace_agents a JOIN workspace_resources r ON r.id = a.resource_id"
                          " WHERE r.job_id = %s ORDER BY a.name", (build.job.id,)).fetchall()
    apps = conn.execute("SELECT p.* FROM workspace_apps p JOIN workspace_agents a ON a.id = p.agent_id"
                        " JOIN workspace_resources r ON r.id = a.resource_id WHERE r.job_id = %s ORDER BY p.slug",
                        (build.job.id,)).fetchall()
    found = []
    now = datetime.now(UTC)
    for row in rows:
        mine = [a for a in agents if a["resource_id"] == row["id"]]
        found.append({
            "type": row["type"], "name": row["name"], "address": row["address"], "daily_cost": row["daily_cost"],
            "metadata": [{**m, "value": "********" if m.get("sensitive") else m.get("value", "")}
                         for m in row["metadata"]],
            "agents": [{"id": str(a["id"]), "name": a["name"], "os": a["os"], "arch": a["arch"],
                        "status": connection_status(ConnectionTimes.from_row(a), now),
                        "lifecycle_state": a["lifecycle_state"],
                        "apps": [{"slug": p["slug"], "display_name": p["display_name"], "url": p["url"],
                                  "command": p["command"], "share": p["share"], "health": p["health"]}
                                 for p in apps if p["agent_id"] == a["id"]]}
                       for a in mine]})
    return found
