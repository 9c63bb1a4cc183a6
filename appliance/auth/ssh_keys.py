"""The workspace owner's SSH key, as Coder's gitsshkey: one ed25519 pair per user, made on first use.

The public key is what templates see (data.appliance_workspace_owner.ssh_public_key) and what the
user adds to a Git server; only its holder (and those who may manage the account) read it, and
regenerating it is audited. The private key never leaves through the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncssh

from appliance.audit.record import RequestInfo, record
from appliance.auth.rbac import Action, Subject, authorize
from appliance.auth.users import User, get_user
from appliance.db.database import Connection, Row

_COMMENT = "appliance workspace owner key"


@dataclass(frozen=True)
class UserSshKey:
    user_id: UUID
    public_key: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> UserSshKey:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


def _new_pair() -> tuple[str, str]:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=_COMMENT)
    return key.export_private_key("openssh").decode(), key.export_public_key("openssh").decode().strip()


def ensure_key(conn: Connection, user_id: UUID) -> UserSshKey:
    """The user's key, made now if they have none (two first uses at once keep one)."""
    private, public = _new_pair()
    conn.execute("INSERT INTO user_ssh_keys (user_id, private_key, public_key) VALUES (%s, %s, %s)"
                 " ON CONFLICT (user_id) DO NOTHING", (user_id, private, public))
    row = conn.execute("SELECT user_id, public_key, created_at, updated_at FROM user_ssh_keys WHERE user_id = %s",
                       (user_id,)).fetchone()
    assert row is not None
    return UserSshKey.from_row(row)


def _holder(conn: Connection, actor: Subject, ref: str) -> User:
    """The user whose key `actor` may see: their own, or an account they may manage."""
    user = get_user(conn, actor, ref)
    authorize(actor, Action.UPDATE, user.resource)
    return user


def get_key(conn: Connection, actor: Subject, ref: str) -> UserSshKey:
    return ensure_key(conn, _holder(conn, actor, ref).id)


def regenerate(conn: Connection, actor: Subject, ref: str, info: RequestInfo) -> UserSshKey:
    """A new pair replaces the old one; Git servers that trusted the old public key must get the new one."""
    user = _holder(conn, actor, ref)
    old = ensure_key(conn, user.id)
    private, public = _new_pair()
    row = conn.execute("UPDATE user_ssh_keys SET private_key = %s, public_key = %s, updated_at = now()"
                       " WHERE user_id = %s RETURNING user_id, public_key, created_at, updated_at",
                       (private, public, user.id)).fetchone()
    assert row is not None
    record(conn, actor=actor, action="write", resource_type="user_ssh_key", resource_id=user.id,
           target=user.username, info=info,
           diff={"public_key": {"old": old.public_key, "new": public, "secret": False}})
    return UserSshKey.from_row(row)
