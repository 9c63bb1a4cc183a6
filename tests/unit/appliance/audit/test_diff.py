"""Audit diffs: only changed fields, and never a secret's value."""

from __future__ import annotations

from uuid import UUID

from appliance.audit.record import diff_fields


def test_only_changed_fields_are_listed() -> None:
    diff = diff_fields({"status": "active", "email": "a@x.org"}, {"status": "suspended", "email": "a@x.org"})
    assert diff == {"status": {"old": "active", "new": "suspended", "secret": False}}


def test_secret_fields_are_marked_and_their_values_dropped() -> None:
    diff = diff_fields({"hashed_password": "$argon2id$old"}, {"hashed_password": "$argon2id$new"})
    assert diff == {"hashed_password": {"old": "", "new": "", "secret": True}}


def test_created_and_deleted_objects_show_every_field() -> None:
    user_id = UUID(int=7)
    created = diff_fields({}, {"id": user_id, "roles": ["owner"]})
    assert created["id"]["new"] == str(user_id)
    assert created["roles"] == {"old": None, "new": ["owner"], "secret": False}
    assert diff_fields({"username": "bob"}, {})["username"]["new"] is None
