"""The role table: what each site role may do, on its own resources and everyone's."""

from __future__ import annotations

from uuid import uuid4

import pytest

from appliance.auth.rbac import (
    Action,
    Resource,
    ResourceType,
    Subject,
    authorize,
    is_allowed,
)
from appliance.errors import Forbidden

ME, OTHER = uuid4(), uuid4()
C, R, U, D = Action.CREATE, Action.READ, Action.UPDATE, Action.DELETE
T = ResourceType


def subject(*roles: str) -> Subject:
    return Subject.of(ME, "me", list(roles))


# (role, action, resource, owned by me?, allowed?)
MATRIX = [
    ("owner", D, T.USER, False, True),
    ("owner", U, T.ROLE_ASSIGNMENT, False, True),
    ("owner", R, T.AUDIT_LOG, False, True),
    ("owner", D, T.API_KEY, False, True),
    ("user-admin", C, T.USER, False, True),
    ("user-admin", D, T.USER, False, True),
    ("user-admin", U, T.ROLE_ASSIGNMENT, False, False),
    ("user-admin", R, T.AUDIT_LOG, False, False),
    ("user-admin", R, T.API_KEY, False, False),
    ("template-admin", C, T.TEMPLATE, False, True),
    ("template-admin", R, T.WORKSPACE, False, True),
    ("template-admin", D, T.WORKSPACE, False, False),
    ("template-admin", R, T.USER, False, True),
    ("template-admin", C, T.USER, False, False),
    ("auditor", R, T.AUDIT_LOG, False, True),
    ("auditor", R, T.USER, False, True),
    ("auditor", U, T.USER, False, False),
    ("member", R, T.USER, True, True),
    ("member", U, T.USER, True, True),
    ("member", R, T.USER, False, False),
    ("member", D, T.USER, True, False),
    ("member", C, T.API_KEY, True, True),
    ("member", R, T.API_KEY, False, False),
    ("member", C, T.WORKSPACE, True, True),
    ("member", R, T.WORKSPACE, False, False),
    ("member", R, T.AUDIT_LOG, False, False),
    ("member", R, T.TEMPLATE, False, True),
    ("member", C, T.TEMPLATE, False, False),
]


@pytest.mark.parametrize(("role", "action", "rtype", "own", "allowed"), MATRIX,
                         ids=[f"{r} {'may' if a else 'may not'} {act} {'own' if o else 'any'} {t}"
                              for r, act, t, o, a in MATRIX])
def test_role_matrix(role: str, action: Action, rtype: ResourceType, own: bool, allowed: bool) -> None:
    resource = Resource(rtype, owner_id=ME if own else OTHER)
    who = subject() if role == "member" else subject(role)
    assert is_allowed(who, action, resource) is allowed


@pytest.mark.parametrize("action", [U, D])
def test_only_owners_may_change_or_remove_an_account_holding_a_site_role(action: Action) -> None:
    privileged = Resource(T.USER, owner_id=OTHER, holds_site_role=True)
    assert not is_allowed(subject("user-admin"), action, privileged)
    assert is_allowed(subject("owner"), action, privileged)
    assert is_allowed(subject("user-admin"), action, Resource(T.USER, owner_id=OTHER))


def test_a_site_role_holder_still_changes_their_own_account() -> None:
    mine = Resource(T.USER, owner_id=ME, holds_site_role=True)
    assert is_allowed(subject("template-admin"), U, mine)
    assert not is_allowed(subject("template-admin"), U, Resource(T.USER, holds_site_role=True))


def test_roles_add_up() -> None:
    both = subject("auditor", "template-admin")
    assert is_allowed(both, R, Resource(T.AUDIT_LOG))
    assert is_allowed(both, C, Resource(T.TEMPLATE))


def test_authorize_raises_forbidden_with_a_readable_message() -> None:
    with pytest.raises(Forbidden, match="not allowed to read this audit log"):
        authorize(subject(), R, Resource(T.AUDIT_LOG))
