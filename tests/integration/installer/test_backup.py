"""Backups and the restore drill on a real PostgreSQL, with the installed host's layout in a scratch tree.

The database is owned by an ordinary (not superuser) role, as the installed appliance's is, and
`/opt/appliance/current/venv` is the real venv, so the restore runs the real `appliance migrate`.
Units are not stopped here (there is no systemd); the e2e host covers that.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from appliance.audit.record import SYSTEM
from appliance.auth.users import NewUser, create_first_user, create_user, delete_user, find_user
from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations, available_migrations
from installer.backup import MANIFEST, PARTIAL, list_backups, restore_backup, run_restore, take_backup
from installer.errors import InstallError
from installer.paths import HostPaths
from tests.support.postgres import conninfo_url, drop_database

_names = itertools.count(1)
VERSION = "1.0.0"
REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Host:
    paths: HostPaths
    conninfo: str  # as the appliance's own role
    admin: str     # as the cluster's superuser, for what the appliance cannot do itself
    dbname: str

    def connect(self) -> psycopg.Connection[dict[str, object]]:
        return psycopg.connect(self.conninfo, autocommit=True, row_factory=dict_row)

    def usernames(self) -> set[str]:
        with self.connect() as conn:
            return {str(r["username"]) for r in conn.execute("SELECT username FROM users WHERE deleted_at IS NULL")}


def _owned_database(admin: str) -> tuple[str, str]:
    """A database and role as the postgres playbook makes them: an ordinary role owning its database."""
    name = f"backup_{next(_names)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw-of-the-role'").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
    conninfo = make_conninfo(admin, user=name, password="pw-of-the-role", dbname=name)
    apply_migrations(conninfo)
    return name, conninfo


def _installed_tree(root: Path, conninfo: str) -> HostPaths:
    paths = HostPaths(root=root)
    release = paths.release(VERSION)
    release.mkdir(parents=True)
    (release / "venv").symlink_to(Path(sys.prefix))  # the real venv: `appliance` and its migrations
    (release / "providers/mirror").mkdir(parents=True)
    (release / "providers/mirror/index.json").write_text('{"versions": {"1.0.0": {}}}')
    (release / "providers/mirror/provider_1.0.0.zip").write_bytes(b"zip" * 1000)
    paths.current.symlink_to(release.relative_to(paths.opt))
    paths.secrets.mkdir(parents=True, mode=0o700)
    paths.etc.chmod(0o700)
    paths.config.write_text(f'postgres_url = "{conninfo_url(conninfo)}"\n')
    (paths.secrets / "postgres-password").write_text("pw-of-the-role\n")
    (paths.state / "pki/root").mkdir(parents=True)
    (paths.state / "pki/root/ca.key.pem").write_text("the CA's key\n")
    v2 = paths.state / "registry/storage/docker/registry/v2"
    (v2 / "repositories/base/debian/_manifests/tags/12").mkdir(parents=True)
    (v2 / "repositories/base/debian/_manifests/tags/12/link").write_text("sha256:abc")
    (v2 / "repositories/base/debian/_uploads/partial").mkdir(parents=True)
    (v2 / "blobs/sha256/ab/abc").mkdir(parents=True)
    (v2 / "blobs/sha256/ab/abc/data").write_bytes(b"layer" * 2000)
    paths.receipts.mkdir(parents=True)
    (paths.receipts / "latest.json").write_text('{"version": "1.0.0"}')
    return paths


@pytest.fixture
def host(pg_cluster: EmbeddedPostgres, tmp_path: Path) -> Iterator[Host]:
    admin = pg_cluster.conninfo("postgres")
    name, conninfo = _owned_database(admin)
    yield Host(_installed_tree(tmp_path / "host", conninfo), conninfo, admin, name)
    drop_database(admin, name)


def _add_users(host: Host) -> None:
    with host.connect() as conn:
        owner = create_first_user(conn, NewUser("owner", "owner@example.com", "correct horse battery"), SYSTEM)
        create_user(conn, owner.subject(), NewUser("alice", "alice@example.com", "correct horse battery"), SYSTEM)


def _delete(host: Host, username: str) -> None:
    with host.connect() as conn:
        owner = find_user(conn, "owner")
        assert owner is not None
        delete_user(conn, owner.subject(), username, SYSTEM)


def test_restore_drill_brings_a_deleted_user_and_the_config_back(host: Host) -> None:
    _add_users(host)
    backup = take_backup(host.paths, reason="drill")
    listed = {f.name for f in backup.files}
    assert {"database.dump", "etc-appliance.tar", "pki.tar", "registry-metadata.tar", "mirror-metadata.tar",
            "receipts.tar"} <= listed
    assert backup.schema_version == available_migrations()[-1].version
    assert backup.version == VERSION
    assert backup.not_copied["registry blobs"]["bytes"] == 10000
    _delete(host, "alice")
    host.paths.config.with_name("added-after.toml").write_text("x = 1\n")
    (host.paths.state / "pki/root/ca.key.pem").write_text("overwritten\n")

    restored = restore_backup(host.paths, backup.path, units=())

    assert restored.path == backup.path
    assert host.usernames() == {"owner", "alice"}
    assert not host.paths.config.with_name("added-after.toml").exists()
    assert (host.paths.state / "pki/root/ca.key.pem").read_text() == "the CA's key\n"
    assert (host.paths.etc.stat().st_mode & 0o777) == 0o700
    with host.connect() as conn:  # the restored database is owned by the appliance's role, as before
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'users'").fetchone()
        assert owner is not None and owner["tableowner"] == conn.info.user


def test_a_backup_holds_what_its_manifest_says_and_neither_blobs_nor_uploads_nor_zips(host: Host) -> None:
    backup = take_backup(host.paths, reason="scheduled")
    manifest = json.loads((backup.path / MANIFEST).read_text())
    assert manifest["version"] == VERSION and manifest["reason"] == "scheduled"
    assert {f["name"] for f in manifest["files"]} == {p.name for p in backup.path.iterdir()} - {MANIFEST}
    assert sum(f["size"] for f in manifest["files"]) == backup.size
    assert (backup.path.stat().st_mode & 0o777) == 0o700
    members = subprocess.run(["tar", "-tf", str(backup.path / "registry-metadata.tar")], capture_output=True,
                             text=True, check=True).stdout
    assert "tags/12/link" in members and "_uploads" not in members
    mirror = subprocess.run(["tar", "-tf", str(backup.path / "mirror-metadata.tar")], capture_output=True,
                            text=True, check=True).stdout
    assert "index.json" in mirror and ".zip" not in mirror
    # What the health report and metrics (user appliance) read, since the folder itself is root's alone.
    summary = json.loads(host.paths.backup_summary.read_text())
    assert (host.paths.backup_summary.stat().st_mode & 0o777) == 0o644
    assert [b["name"] for b in summary["backups"]] == [backup.path.name] and summary["last_failure"] is None


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_tampered_backup_is_refused_and_nothing_changes(host: Host, damage: str) -> None:
    _add_users(host)
    backup = take_backup(host.paths, reason="drill")
    _delete(host, "alice")
    target = backup.path / "etc-appliance.tar"
    if damage == "changed":
        data = bytearray(target.read_bytes())
        data[600] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    config_before = host.paths.config.read_text()

    with pytest.raises(InstallError, match=r"etc-appliance\.tar (does not match its sha256|is missing)") as err:
        restore_backup(host.paths, backup.path, units=())

    assert "nothing was changed" in err.value.message
    assert host.usernames() == {"owner"}
    assert host.paths.config.read_text() == config_before


def test_a_backup_of_a_newer_schema_is_refused(host: Host) -> None:
    _add_users(host)
    with host.connect() as conn:  # as a later release's migration would leave it
        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
    backup = take_backup(host.paths, reason="before downgrade")
    assert backup.schema_version == 999
    with host.connect() as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 999")
    _delete(host, "alice")

    with pytest.raises(InstallError, match="holds schema 000999, newer than this release") as err:
        restore_backup(host.paths, backup.path, units=())

    assert "nothing was changed" in err.value.message
    assert host.usernames() == {"owner"}


def test_retention_keeps_the_newest_n(host: Host) -> None:
    taken = [take_backup(host.paths, reason=f"run {n}", keep=2) for n in range(3)]
    kept = list_backups(host.paths)
    assert [b.path for b in kept] == [b.path for b in taken[1:]]
    assert not taken[0].path.exists()
    with pytest.raises(InstallError, match="at least one backup"):
        take_backup(host.paths, reason="none kept", keep=0)


def test_a_failing_pg_dump_leaves_no_backup(host: Host) -> None:
    with psycopg.connect(make_conninfo(host.admin, dbname=host.dbname), autocommit=True) as conn:
        # A table the appliance's role may not read (made by hand, as the cluster's superuser).
        conn.execute("CREATE TABLE hand_made (x int)")

    with pytest.raises(InstallError, match=r"pg_dump failed: .*permission denied"):
        take_backup(host.paths, reason="doomed")

    assert list_backups(host.paths) == []
    assert [p.name for p in host.paths.backups.iterdir()] == [".lock"]
    failure = json.loads(host.paths.backup_summary.read_text())["last_failure"]
    assert "pg_dump failed" in failure["error"]


def test_a_killed_backup_leaves_nothing_that_looks_complete_and_the_next_one_cleans_up(host: Host) -> None:
    script = ("import sys; from pathlib import Path; from installer.backup import take_backup; "
              "from installer.paths import HostPaths; take_backup(HostPaths(root=Path(sys.argv[1])), reason='x')")
    with host.connect() as blocker:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # pg_dump waits here, mid-backup
        process = subprocess.Popen([sys.executable, "-c", script, str(host.paths.root)], start_new_session=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            _wait_for(lambda: any((p / "database.dump").exists() for p in host.paths.backups.glob(PARTIAL + "*")))
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        blocker.execute("ROLLBACK")

    assert list_backups(host.paths) == []
    assert not any((p / MANIFEST).exists() for p in host.paths.backups.iterdir() if p.is_dir())
    backup = take_backup(host.paths, reason="after the kill")
    assert [p.name for p in host.paths.backups.iterdir() if p.is_dir()] == [backup.path.name]


def test_a_full_disk_gives_a_clear_error_and_no_partial_backup(host: Host) -> None:
    (host.paths.state / "pki/root/big.bin").write_bytes(os.urandom(2 << 20))  # more than the disk holds
    host.paths.backups.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(host.paths.backups)],
                   check=True)
    try:
        with pytest.raises(InstallError, match=r"disk holding .* is full") as err:
            take_backup(host.paths, reason="full")
        assert "partial backup was removed" in err.value.message
        assert [p.name for p in host.paths.backups.iterdir()] == [".lock"]
    finally:
        subprocess.run(["umount", str(host.paths.backups)], check=True)


def _maintenance(host: Host) -> dict[str, object]:
    with host.connect() as conn:
        row = conn.execute("SELECT active, reason FROM maintenance").fetchone()
        assert row is not None
        return row


def _restores(host: Host) -> list[dict[str, object]]:
    with host.connect() as conn:
        return conn.execute("SELECT outcome, failed_step, actor, steps, plan FROM release_history"
                            " WHERE kind = 'restore' ORDER BY started_at").fetchall()


def test_the_restore_command_runs_under_maintenance_and_is_recorded(host: Host) -> None:
    _add_users(host)
    backup = take_backup(host.paths, reason="drill")
    _delete(host, "alice")

    run_restore(host.paths, backup.path, actor="tester (installer)", units=())

    assert host.usernames() == {"owner", "alice"}
    assert _maintenance(host)["active"] is False
    [record] = _restores(host)
    assert record["outcome"] == "succeeded" and record["actor"] == "tester (installer)"
    assert [s["name"] for s in record["steps"]] == ["verify backup", "enter maintenance", "restore",  # type: ignore[attr-defined]
                                                    "leave maintenance"]
    assert record["plan"]["backup"] == str(backup.path)  # type: ignore[index]


def test_a_restore_that_fails_changes_no_row_stays_in_maintenance_and_is_recorded(host: Host) -> None:
    _add_users(host)
    backup = take_backup(host.paths, reason="drill")
    _delete(host, "alice")
    with psycopg.connect(make_conninfo(host.admin, dbname=host.dbname), autocommit=True) as conn:
        # Made by hand as the cluster's superuser: the restore fails once it has dropped something.
        conn.execute("CREATE SCHEMA hand_made")
        conn.execute("CREATE FUNCTION hand_made.refuse() RETURNS event_trigger LANGUAGE plpgsql AS"
                     " $$ BEGIN RAISE EXCEPTION 'refused by a hand-made trigger'; END $$")
        conn.execute("CREATE EVENT TRIGGER refuse ON sql_drop EXECUTE FUNCTION hand_made.refuse()")

    with pytest.raises(InstallError, match=r"psql \(restoring the dump\) failed: .*refused by a hand-made") as err:
        run_restore(host.paths, backup.path, actor="tester (installer)", units=())

    assert "stays in maintenance" in err.value.hint
    assert host.usernames() == {"owner"}
    assert _maintenance(host)["active"] is True
    [record] = _restores(host)
    assert record["outcome"] == "failed" and record["failed_step"] == "restore"


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.05)
