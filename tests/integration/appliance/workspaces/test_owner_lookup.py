"""Naming another user as a workspace's owner tells a caller nothing about who exists."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.api import Api


def _create_for(api: Api, owner: str) -> Any:
    return api.post("/api/v2/workspaces", json={"template": "base", "name": "dev", "owner": owner})


def _without(body: dict[str, str], name: str) -> dict[str, str]:
    return {key: value.replace(name, "<owner>") for key, value in body.items()}


@pytest.mark.security(finding=11)
@pytest.mark.parametrize("by", ["username", "id"])
def test_a_member_naming_an_existing_owner_gets_the_same_404_as_for_a_missing_one(owner_api: Api, by: str) -> None:
    carol = owner_api.create_user(username="carol")
    owner_api.create_user(username="mallory")
    mallory = owner_api.as_user(owner_api.login("mallory"))
    assert owner_api.post("/api/v2/templates", json={"name": "base"}).status_code == 201
    existing_ref = carol["username"] if by == "username" else carol["id"]
    missing_ref = "nobody" if by == "username" else str(uuid.uuid4())

    existing, missing = _create_for(mallory, existing_ref), _create_for(mallory, missing_ref)

    assert (existing.status_code, missing.status_code) == (404, 404), existing.text
    assert _without(existing.json(), existing_ref) == _without(missing.json(), missing_ref)


def test_an_admin_who_may_read_users_is_told_why_not(owner_api: Api) -> None:
    """A template admin lists users anyway: for them a plain 403 hides nothing."""
    owner_api.create_user(username="carol")
    owner_api.create_user(roles=["template-admin"], username="tad")
    tad = owner_api.as_user(owner_api.login("tad"))
    owner_api.post("/api/v2/templates", json={"name": "base"})
    assert _create_for(tad, "carol").status_code == 403
    assert _create_for(tad, "nobody").status_code == 404
