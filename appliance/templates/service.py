"""Templates and their versions: create, push a version (queues its import), promote, archive, delete.

A version becomes active only when its import succeeded, so a template that does not parse never
replaces the one workspaces are built from. Every change is audited in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from appliance.audit.record import RequestInfo, diff_fields, record
from appliance.auth.rbac import (
    ASSIGNABLE_ROLES,
    MEMBER,
    Action,
    Resource,
    ResourceType,
    Subject,
    authorize,
    is_allowed,
)
from appliance.db.database import Connection, Row
from appliance.errors import Conflict, Forbidden, InvalidInput, NotFound
from appliance.provisioner import jobs
from appliance.provisionerd import unpack  # the daemons' rules and limits, checked at upload
from appliance.sdk.base import whole_number
from appliance.templates.archive import MAX_SOURCE_BYTES

NAME_RULE = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?")  # fullmatch: `$` would pass "name\n"
MAX_VERSION_NUMBER = 2**31 - 1  # template_versions.number is a PostgreSQL integer
ROLE_CHOICES = (*ASSIGNABLE_ROLES, MEMBER)
TEMPLATE = Resource(ResourceType.TEMPLATE)


@dataclass(frozen=True)
class Template:
    id: UUID
    name: str
    display_name: str
    description: str
    allowed_roles: list[str]
    active_version_id: UUID | None
    active_version_name: str | None
    workspace_count: int
    created_at: datetime
    updated_at: datetime



@dataclass(frozen=True)
class Version:
    id: UUID
    template_id: UUID
    template_name: str
    number: int
    message: str
    archived: bool
    active: bool
    activate_requested: bool
    file_hash: str
    job: jobs.Job
    parameters: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    created_by: str
    created_at: datetime

    @property
    def name(self) -> str:
        return f"v{self.number}"



_TEMPLATE_SELECT = (
    "SELECT t.*, 'v' || v.number AS active_version_name,"
    " (SELECT count(*) FROM workspaces w WHERE w.template_id = t.id AND w.deleted_at IS NULL) AS workspace_count"
    " FROM templates t LEFT JOIN template_versions v ON v.id = t.active_version_id WHERE t.deleted_at IS NULL")
_VERSION_SELECT = (
    "SELECT v.*, t.name AS template_name, (t.active_version_id = v.id) IS TRUE AS active,"
    " coalesce(u.username, 'appliance') AS creator,"
    " j.type, j.canceled_at, j.completed_at, j.started_at, j.error, j.timeout_seconds, j.created_at AS job_created_at"
    " FROM template_versions v JOIN templates t ON t.id = v.template_id LEFT JOIN users u ON u.id = v.created_by"
    " JOIN provisioner_jobs j ON j.id = v.job_id")


def _template(row: Row) -> Template:
    return Template(row["id"], row["name"], row["display_name"], row["description"], list(row["allowed_roles"]),
                    row["active_version_id"], row["active_version_name"], row["workspace_count"],
                    row["created_at"], row["updated_at"])


def _version(row: Row) -> Version:
    job = jobs.Job.from_row({**row, "id": row["job_id"], "created_at": row["job_created_at"]})
    return Version(row["id"], row["template_id"], row["template_name"], row["number"], row["message"],
                   row["archived"], row["active"], row["activate"], row["file_hash"], job, row["parameters"],
                   row["agents"], row["creator"], row["created_at"])


def _as_uuid(ref: str) -> UUID | None:
    try:
        return UUID(ref)
    except ValueError:
        return None


def _check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLE_CHOICES))
    if unknown or not roles:
        raise InvalidInput(f"Invalid allowed_roles {roles}: give one or more of {', '.join(ROLE_CHOICES)}.",
                           "'member' lets every user create workspaces from the template.", field="allowed_roles")
    return sorted(set(roles))


def find_template(conn: Connection, ref: str) -> Template:
    uid = _as_uuid(ref)
    row = conn.execute(_TEMPLATE_SELECT + (" AND t.id = %s" if uid else " AND t.name = %s"),
                       (uid or ref,)).fetchone()
    if row is None:
        raise NotFound(f"Template {ref!r} does not exist.", "List templates with `appliance templates list`.")
    return _template(row)


def get_template(conn: Connection, subject: Subject, ref: str) -> Template:
    authorize(subject, Action.READ, TEMPLATE)
    return find_template(conn, ref)


def list_templates(conn: Connection, subject: Subject) -> list[Template]:
    authorize(subject, Action.READ, TEMPLATE)
    return [_template(r) for r in conn.execute(_TEMPLATE_SELECT + " ORDER BY t.name").fetchall()]


def check_archive(data: bytes) -> None:
    """Refuse what cannot be a template source, before anything is stored (and outside any transaction)."""
    if len(data) > MAX_SOURCE_BYTES:
        raise InvalidInput(f"The upload is {len(data) // 1024} KiB; template sources are limited to "
                           f"{MAX_SOURCE_BYTES // 1024 // 1024} MiB.", "Leave .terraform/ and large files out.")
    try:
        names = unpack.check_archive(data)
    except unpack.ArchiveRefused as err:
        raise InvalidInput(err.message, err.hint) from err
    if not any(name.endswith((".tf", ".tf.json")) for name in names):
        raise InvalidInput("The archive holds no Terraform files (*.tf).",
                           "Push the directory that contains the template's main.tf.")


def insert_file(conn: Connection, data: bytes, created_by: UUID | None) -> str:
    check_archive(data)
    digest = hashlib.sha256(data).hexdigest()
    conn.execute("INSERT INTO files (hash, data, created_by) VALUES (%s, %s, %s) ON CONFLICT (hash) DO NOTHING",
                 (digest, data, created_by))
    return digest


def store_file(conn: Connection, subject: Subject, data: bytes) -> str:
    """Keep an uploaded template source (a tar archive); returns its sha256, the name to refer to it by."""
    authorize(subject, Action.CREATE, TEMPLATE)
    return insert_file(conn, data, subject.user_id)


def insert_template(conn: Connection, *, name: str, display_name: str, description: str, allowed_roles: list[str],
                    created_by: UUID | None) -> UUID:
    if not NAME_RULE.fullmatch(name):
        raise InvalidInput(f"Invalid template name {name!r}.",
                           "Use 1-32 lowercase letters, digits and inner hyphens.", field="name")
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO templates (name, display_name, description, allowed_roles, created_by)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (name, display_name, description, _check_roles(allowed_roles), created_by)).fetchone()
    except pg_errors.UniqueViolation as err:
        raise Conflict(f"A template named {name!r} already exists.", "Push a new version to it instead.",
                       field="name") from err
    assert row is not None
    return UUID(str(row["id"]))


def create_template(conn: Connection, subject: Subject, info: RequestInfo, *, name: str, display_name: str = "",
                    description: str = "", allowed_roles: list[str] | None = None) -> Template:
    authorize(subject, Action.CREATE, TEMPLATE)
    template_id = insert_template(conn, name=name, display_name=display_name, description=description,
                                  allowed_roles=allowed_roles or [MEMBER], created_by=subject.user_id)
    record(conn, actor=subject, action="create", resource_type="template", resource_id=template_id, target=name,
           diff={"name": {"old": None, "new": name, "secret": False}}, status=201, info=info)
    return find_template(conn, str(template_id))


def update_template(conn: Connection, subject: Subject, info: RequestInfo, ref: str, *,
                    display_name: str | None = None, description: str | None = None,
                    allowed_roles: list[str] | None = None) -> Template:
    authorize(subject, Action.UPDATE, TEMPLATE)
    before = find_template(conn, ref)
    after = {"display_name": before.display_name if display_name is None else display_name,
             "description": before.description if description is None else description,
             "allowed_roles": before.allowed_roles if allowed_roles is None else _check_roles(allowed_roles)}
    conn.execute("UPDATE templates SET display_name = %s, description = %s, allowed_roles = %s, updated_at = now()"
                 " WHERE id = %s", (after["display_name"], after["description"], after["allowed_roles"], before.id))
    old = {k: getattr(before, k) for k in after}
    record(conn, actor=subject, action="write", resource_type="template", resource_id=before.id, target=before.name,
           diff=diff_fields(old, after), info=info)
    return find_template(conn, str(before.id))


def delete_template(conn: Connection, subject: Subject, info: RequestInfo, ref: str) -> None:
    authorize(subject, Action.DELETE, TEMPLATE)
    template = find_template(conn, ref)
    conn.execute("SELECT id FROM templates WHERE id = %s FOR UPDATE", (template.id,))
    count = conn.execute("SELECT count(*) AS n FROM workspaces WHERE template_id = %s AND deleted_at IS NULL",
                         (template.id,)).fetchone()
    if count and count["n"]:
        raise Conflict(f"Template {template.name!r} still has {count['n']} workspace(s).",
                       "Delete those workspaces first (`appliance list --all`), then the template.")
    conn.execute("UPDATE templates SET deleted_at = now(), updated_at = now() WHERE id = %s", (template.id,))
    record(conn, actor=subject, action="delete", resource_type="template", resource_id=template.id,
           target=template.name, info=info)


def insert_version(conn: Connection, template: Template, *, file_hash: str, message: str, activate: bool,
                   timeout: timedelta, created_by: UUID | None) -> tuple[UUID, int]:
    if conn.execute("SELECT 1 FROM files WHERE hash = %s", (file_hash,)).fetchone() is None:
        raise InvalidInput(f"No uploaded file has hash {file_hash!r}.", "Upload the template with POST /files first.",
                           field="file_hash")
    conn.execute("SELECT id FROM templates WHERE id = %s FOR UPDATE", (template.id,))
    job_id = jobs.enqueue(conn, jobs.JobType.IMPORT, initiator_id=created_by, timeout=timeout)
    row = conn.execute(
        "INSERT INTO template_versions (template_id, number, message, file_hash, job_id, activate, created_by)"
        " SELECT %s, coalesce(max(number), 0) + 1, %s, %s, %s, %s, %s FROM template_versions WHERE template_id = %s"
        " RETURNING id, number", (template.id, message, file_hash, job_id, activate, created_by, template.id),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"])), int(row["number"])


def create_version(conn: Connection, subject: Subject, info: RequestInfo, ref: str, *, file_hash: str,
                   message: str = "", activate: bool = True, timeout: timedelta) -> Version:
    """Add a version from an uploaded file and queue its import; it becomes active only if that succeeds."""
    authorize(subject, Action.UPDATE, TEMPLATE)
    template = find_template(conn, ref)
    version_id, number = insert_version(conn, template, file_hash=file_hash, message=message, activate=activate,
                                        timeout=timeout, created_by=subject.user_id)
    record(conn, actor=subject, action="create", resource_type="template_version", resource_id=version_id,
           target=f"{template.name} v{number}", status=201, info=info,
           diff={"message": {"old": None, "new": message, "secret": False}})
    return find_version(conn, template, str(version_id))


def find_version(conn: Connection, template: Template, ref: str) -> Version:
    uid = _as_uuid(ref)
    number = whole_number(ref[1:] if ref.startswith("v") else ref, MAX_VERSION_NUMBER)
    if uid is None and number is None:
        raise NotFound(f"Version {ref!r} of template {template.name!r} does not exist.",
                       "Versions are named v1, v2, ...: see `appliance templates versions`.")
    row = conn.execute(_VERSION_SELECT + (" WHERE v.template_id = %s AND v.id = %s" if uid else
                                          " WHERE v.template_id = %s AND v.number = %s"),
                       (template.id, uid or number)).fetchone()
    if row is None:
        raise NotFound(f"Version {ref!r} of template {template.name!r} does not exist.",
                       f"See `appliance templates versions {template.name}`.")
    return _version(row)


def version_by_id(conn: Connection, version_id: UUID) -> Version:
    row = conn.execute(_VERSION_SELECT + " WHERE v.id = %s", (version_id,)).fetchone()
    if row is None:
        raise NotFound(f"Template version {version_id} does not exist.", "")
    return _version(row)


def version_for_job(conn: Connection, job_id: UUID) -> Version | None:
    row = conn.execute(_VERSION_SELECT + " WHERE v.job_id = %s", (job_id,)).fetchone()
    return _version(row) if row else None


def list_versions(conn: Connection, subject: Subject, ref: str) -> list[Version]:
    template = get_template(conn, subject, ref)
    rows = conn.execute(_VERSION_SELECT + " WHERE v.template_id = %s ORDER BY v.number DESC", (template.id,))
    return [_version(r) for r in rows.fetchall()]


def get_version(conn: Connection, subject: Subject, ref: str, version_ref: str) -> Version:
    return find_version(conn, get_template(conn, subject, ref), version_ref)


def _activate(conn: Connection, template_id: UUID, version_id: UUID) -> None:
    conn.execute("UPDATE templates SET active_version_id = %s, updated_at = now() WHERE id = %s",
                 (version_id, template_id))


def promote(conn: Connection, subject: Subject, info: RequestInfo, ref: str, version_ref: str) -> Version:
    authorize(subject, Action.UPDATE, TEMPLATE)
    template = find_template(conn, ref)
    version = find_version(conn, template, version_ref)
    if version.job.status is not jobs.JobStatus.SUCCEEDED:
        raise Conflict(f"{template.name} {version.name} cannot be promoted: its import {version.job.status.value}.",
                       "Only a version whose import succeeded can become active.")
    if version.archived:
        raise Conflict(f"{template.name} {version.name} is archived.", "Unarchive it first.")
    _activate(conn, template.id, version.id)
    record(conn, actor=subject, action="write", resource_type="template", resource_id=template.id,
           target=template.name, info=info,
           diff={"active_version": {"old": template.active_version_name, "new": version.name, "secret": False}})
    return find_version(conn, template, str(version.id))


def set_archived(conn: Connection, subject: Subject, info: RequestInfo, ref: str, version_ref: str,
                 archived: bool) -> Version:
    authorize(subject, Action.UPDATE, TEMPLATE)
    template = find_template(conn, ref)
    version = find_version(conn, template, version_ref)
    if archived and version.active:
        raise Conflict(f"{template.name} {version.name} is the active version.",
                       "Promote another version first, then archive this one.")
    conn.execute("UPDATE template_versions SET archived = %s WHERE id = %s", (archived, version.id))
    record(conn, actor=subject, action="write", resource_type="template_version", resource_id=version.id,
           target=f"{template.name} {version.name}", info=info,
           diff={"archived": {"old": version.archived, "new": archived, "secret": False}})
    return find_version(conn, template, str(version.id))


def complete_import(conn: Connection, version: Version, parameters: list[dict[str, Any]],
                    agents: list[dict[str, Any]]) -> None:
    """Store what the import found; activate the version if asked (or if the template has none yet)."""
    conn.execute("UPDATE template_versions SET parameters = %s, agents = %s WHERE id = %s",
                 (Jsonb(parameters), Jsonb(agents), version.id))
    row = conn.execute("SELECT active_version_id FROM templates WHERE id = %s FOR UPDATE",
                       (version.template_id,)).fetchone()
    if row is not None and (version.activate_requested or row["active_version_id"] is None):
        _activate(conn, version.template_id, version.id)


def can_read_import_logs(subject: Subject) -> bool:
    """Import logs and plans show what a template computes (files, data sources): for those who may change it."""
    return is_allowed(subject, Action.UPDATE, TEMPLATE)


def version_logs_for(conn: Connection, subject: Subject, version_id: str) -> Version:
    """The version whose import logs `subject` asked for; 403 for those who may only use the template."""
    if not can_read_import_logs(subject):
        raise Forbidden("Only template admins and owners can read a template version's import logs.",
                        "Ask a template admin to read them for you, or an owner for the template-admin role.")
    uid = _as_uuid(version_id)
    if uid is None:
        raise NotFound(f"Template version {version_id!r} does not exist.", "Give the version's id.")
    return version_by_id(conn, uid)
