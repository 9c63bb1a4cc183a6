"""The revocation epoch moves after the change commits, never before: a reader cannot cache the old row under it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from appliance.auth import revocations
from appliance.auth.revocations import RevocationEpoch
from appliance.db.database import Database


def test_the_epoch_moves_once_the_transaction_has_committed(fresh_db: str, tmp_path: Path) -> None:
    epoch = RevocationEpoch(tmp_path / "auth-epoch")
    revocations.register(epoch)
    db = Database(fresh_db, max_size=2)
    try:
        before = epoch.current()
        with db.transaction() as conn:
            conn.execute("UPDATE users SET name = 'x' WHERE false")
            revocations.changed(conn)
            assert epoch.current() == before, "bumped before the commit"
        assert epoch.current() == before + 1
        with pytest.raises(psycopg.errors.DivisionByZero), db.transaction() as conn:
            revocations.changed(conn)
            conn.execute("SELECT 1/0")
        assert epoch.current() == before + 2, "a rolled-back change may invalidate; it must not be lost"
        with db.reading() as conn:
            revocations.changed(conn)
        assert epoch.current() == before + 3
    finally:
        db.close()
