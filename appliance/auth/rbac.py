"""Site roles and the one authorization check every endpoint and page goes through.

Modelled on Coder's site roles: a permission is granted either at site level (any object of
that type) or at user level (objects the subject owns). Every user holds the implicit member
role; the others are granted explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from appliance.errors import Forbidden


class Action(StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"


class ResourceType(StrEnum):
    USER = "user"
    ROLE_ASSIGNMENT = "assign_role"
    API_KEY = "api_key"
    AUDIT_LOG = "audit_log"
    TEMPLATE = "template"
    WORKSPACE = "workspace"
    DEPLOYMENT = "deployment_config"
    IMAGE = "image"  # a repository of the internal registry: read = pull, update = push
    RELEASE = "release"  # the installer's receipts: what was installed, upgraded, rolled back, restored
    HEALTH = "health"  # the health report (read) and its dismissals (update)
    METRICS = "metrics"  # GET /api/v2/metrics, with a token of scope 'metrics' (docs/adr/0042)


OWNER, TEMPLATE_ADMIN, USER_ADMIN, AUDITOR, MEMBER = (
    "owner", "template-admin", "user-admin", "auditor", "member")
ASSIGNABLE_ROLES = (OWNER, TEMPLATE_ADMIN, USER_ADMIN, AUDITOR)
ALL = frozenset(Action)
READ = frozenset({Action.READ})
Permissions = dict[ResourceType, frozenset[Action]]


@dataclass(frozen=True)
class Role:
    name: str
    display_name: str
    site: Permissions
    own: Permissions = field(default_factory=dict)


ROLES: dict[str, Role] = {
    OWNER: Role(OWNER, "Owner", dict.fromkeys(ResourceType, ALL)),
    TEMPLATE_ADMIN: Role(TEMPLATE_ADMIN, "Template Admin", {
        ResourceType.TEMPLATE: ALL,
        ResourceType.IMAGE: ALL,
        ResourceType.WORKSPACE: READ,
        ResourceType.USER: READ,
    }),
    USER_ADMIN: Role(USER_ADMIN, "User Admin", {
        ResourceType.USER: ALL,
    }),
    AUDITOR: Role(AUDITOR, "Auditor", {
        ResourceType.AUDIT_LOG: READ,
        ResourceType.USER: READ,
        ResourceType.TEMPLATE: READ,
        ResourceType.RELEASE: READ,
        ResourceType.HEALTH: READ,
        ResourceType.METRICS: READ,
    }),
    MEMBER: Role(MEMBER, "Member", {
        ResourceType.TEMPLATE: READ,
        ResourceType.IMAGE: READ,
    }, own={
        ResourceType.USER: frozenset({Action.READ, Action.UPDATE}),
        ResourceType.API_KEY: ALL,
        ResourceType.WORKSPACE: ALL,
    }),
}


@dataclass(frozen=True)
class Subject:
    """Who is asking: an authenticated user with their roles, through one API key."""

    user_id: UUID
    username: str
    roles: frozenset[str]
    api_key_id: str = ""

    @classmethod
    def of(cls, user_id: UUID, username: str, site_roles: list[str], api_key_id: str = "") -> Subject:
        return cls(user_id, username, frozenset({MEMBER, *site_roles}), api_key_id)


@dataclass(frozen=True)
class Resource:
    type: ResourceType
    owner_id: UUID | None = None
    # A user account holding any site role: only owners change or remove it (see is_allowed).
    holds_site_role: bool = False


def is_allowed(subject: Subject, action: Action, resource: Resource) -> bool:
    roles = [ROLES[name] for name in subject.roles if name in ROLES]
    is_own = resource.owner_id is not None and resource.owner_id == subject.user_id
    if _is_privileged_account_change(subject, action, resource) and not is_own:
        return False
    if any(action in role.site.get(resource.type, ()) for role in roles):
        return True
    return is_own and any(action in role.own.get(resource.type, ()) for role in roles)


def _is_privileged_account_change(subject: Subject, action: Action, resource: Resource) -> bool:
    """A change to an account holding a site role, by someone who is not an owner.

    A user admin manages members only: could they reset a template admin's password, suspend
    an auditor or delete another user admin, they could take over or silence those roles.
    Everyone still changes their own account (their password) through the member role.
    """
    return resource.holds_site_role and action in (Action.UPDATE, Action.DELETE) and OWNER not in subject.roles


def authorize(subject: Subject, action: Action, resource: Resource) -> None:
    """Raise Forbidden unless subject may do action on resource. The only check there is."""
    if not is_allowed(subject, action, resource):
        raise Forbidden(
            f"You are not allowed to {action.value} this {resource.type.value.replace('_', ' ')}.",
            "Ask an owner for a role that grants it.",
        )
