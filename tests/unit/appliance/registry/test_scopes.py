"""Scopes a client asks for, cut down to what the caller's roles allow: never more, whatever is asked."""

from __future__ import annotations

from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.auth.rbac import Subject
from appliance.errors import InvalidInput
from appliance.registry.scopes import Access, grant, parse_scope, parse_scopes


def subject(*roles: str) -> Subject:
    return Subject.of(uuid4(), "someone", list(roles))


# (roles, asked actions, granted actions)
GRANTS = [
    (["owner"], ("pull", "push"), ("pull", "push")),
    (["template-admin"], ("pull", "push"), ("pull", "push")),
    (["template-admin"], ("*",), ("pull", "push")),
    (["template-admin"], ("pull",), ("pull",)),
    ([], ("pull", "push"), ("pull",)),
    ([], ("push",), ()),
    ([], ("*",), ("pull",)),
    (["user-admin"], ("pull", "push"), ("pull",)),
    (["auditor"], ("pull", "push"), ("pull",)),
    (["owner"], ("delete",), ()),
]


@pytest.mark.parametrize(("roles", "asked", "granted"), GRANTS,
                         ids=[f"{'+'.join(r) or 'member'} asking {','.join(a)} gets {','.join(g) or 'nothing'}"
                              for r, a, g in GRANTS])
def test_a_scope_is_intersected_with_the_callers_rights(roles: list[str], asked: tuple[str, ...],
                                                        granted: tuple[str, ...]) -> None:
    access = grant(subject(*roles), [Access("repository", "team/app", asked)])
    assert access == ([Access("repository", "team/app", granted)] if granted else [])


@given(asked=st.lists(st.sampled_from(["pull", "push", "delete", "*", "catalog"]), max_size=5),
       roles=st.lists(st.sampled_from(["owner", "template-admin", "user-admin", "auditor"]), max_size=2))
def test_a_grant_never_holds_an_action_nobody_asked_for(asked: list[str], roles: list[str]) -> None:
    for access in grant(subject(*roles), [Access("repository", "a", tuple(asked))]):
        assert set(access.actions) <= ({"pull", "push"} if "*" in asked else set(asked))


def test_scopes_for_one_repository_merge_and_other_resource_types_are_not_granted() -> None:
    access = grant(subject("owner"), parse_scopes(["repository:a:pull", "repository:a:push registry:catalog:*"]))
    assert access == [Access("repository", "a", ("pull", "push"))]


def test_a_scope_parses_into_type_name_and_actions() -> None:
    assert parse_scope("repository:team/app-1:pull,push") == Access("repository", "team/app-1", ("pull", "push"))


@pytest.mark.parametrize("scope", ["repository", "repository::pull", "repository:Team/App:pull",
                                   "repository:a//b:pull", "repository:-a:pull", f"repository:{'a' * 256}:pull"])
def test_a_malformed_scope_is_refused_naming_the_field(scope: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_scope(scope)
    assert caught.value.field == "scope" and caught.value.detail
