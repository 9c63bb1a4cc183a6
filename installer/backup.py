"""Backups of the appliance's state and restoring one ([docs/adr/0036](../docs/adr/0036-backups.md)).

A backup is one folder under /var/lib/appliance/backups: the database (pg_dump -Fc), tars of
/etc/appliance, the CA, the registry's and the mirror's metadata and the installer's receipts,
and manifest.json naming every file with its size and sha256. It is written under a dot name
and renamed into place when complete, so a killed or failed backup leaves nothing that looks
like one. take_backup does not enter maintenance (the caller does); restore_backup stops the
appliance's units except PostgreSQL, restores and starts them again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from installer.appliance_cli import check_appliance
from installer.errors import InstallError
from installer.journal import write_atomically
from installer.paths import UNITS, HostPaths
from installer.pgclient import Database, client_error

FORMAT = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
PARTIAL = ".partial-"  # a backup being written; never listed, removed by the next backup
BACKUP_STEP = "Backup"
RESTORE_STEP = "Restore"
# Everything but PostgreSQL, which the restore needs running.
APPLIANCE_UNITS = tuple(u for u in UNITS if not u.startswith("postgresql"))
_T = TypeVar("_T")
LOCK_WAIT_SECONDS = 900.0  # a scheduled backup of a large database; longer than that is a stuck one


def _registry_v2(paths: HostPaths) -> Path:
    return paths.state / "registry/storage/docker/registry/v2"


@dataclass(frozen=True)
class Tree:
    """A folder a backup tars; `restored` folders are put back by a restore, the rest are kept for the record."""

    kind: str
    file: str
    holds: str
    source: Callable[[HostPaths], Path]
    restored: bool
    skip: Callable[[str], bool] = lambda name: False


TREES = (
    Tree("etc", "etc-appliance.tar", "/etc/appliance: appliance.toml, the pinned release keys and the secrets",
         lambda p: p.etc, restored=True),
    Tree("pki", "pki.tar", "the internal CA, its keys and the service certificates", lambda p: p.state / "pki",
         restored=True),
    # Links and tags only: the blobs they name are content-addressed and stay where they are.
    Tree("registry", "registry-metadata.tar", "the registry's repositories: tags and manifest links, no blobs",
         lambda p: _registry_v2(p) / "repositories", restored=True, skip=lambda name: name == "_uploads"),
    Tree("mirror-signing", "mirror-signing.tar", "the provider registry's signing key",
         lambda p: p.state / "mirror-signing", restored=True),
    # The release holds the provider zips; its index and signed SHA256SUMS are what this host served.
    Tree("mirror", "mirror-metadata.tar", "the provider mirror's indexes and signed SHA256SUMS, no provider zips",
         lambda p: p.current / "providers", restored=False, skip=lambda name: name.endswith(".zip")),
    Tree("receipts", "receipts.tar", "the installer's receipts (what was installed, signed by whom)",
         lambda p: p.receipts, restored=False),
)
_TREES = {tree.kind: tree for tree in TREES}


@dataclass(frozen=True)
class BackupFile:
    name: str
    size: int
    sha256: str
    holds: str
    kind: str  # "database" or a Tree kind


@dataclass(frozen=True)
class Backup:
    path: Path
    version: str  # the release installed when it was taken
    schema_version: int
    size: int  # bytes, every file
    created_at: datetime
    reason: str = ""
    files: tuple[BackupFile, ...] = ()
    not_copied: dict[str, Any] = field(default_factory=dict)


def take_backup(paths: HostPaths, *, reason: str, keep: int = 7) -> Backup:
    """Back the appliance up into a new folder under paths.backups; then keep only the newest `keep`."""
    if keep < 1:
        raise InstallError(f"--keep {keep}: at least one backup must be kept.", "Pass --keep 1 or more.",
                           step=BACKUP_STEP)
    version = paths.installed_version()
    if version is None:
        raise InstallError("no appliance is installed, so there is nothing to back up.",
                           "Install it first: appliance-installer install BUNDLE", step=BACKUP_STEP)
    try:
        backup = _take(paths, version, reason, keep)
    except BaseException as err:
        publish_summary(paths, failure=str(err) or type(err).__name__)
        raise
    publish_summary(paths)
    return backup


def _take(paths: HostPaths, version: str, reason: str, keep: int) -> Backup:
    database = Database.from_config(paths, step=BACKUP_STEP)
    with _locked(paths):
        for stale in paths.backups.glob(PARTIAL + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        created_at = datetime.now(UTC)
        name = f"{created_at:%Y%m%dT%H%M%SZ}-{version}"
        work = paths.backups / f"{PARTIAL}{name}"
        work.mkdir(mode=0o700)
        try:
            backup = _write(paths, database, work, version, created_at, reason)
            final = _free_name(paths.backups / name)
            work.rename(final)
            _fsync(paths.backups)
        except OSError as err:
            shutil.rmtree(work, ignore_errors=True)
            raise _os_error(err, paths.backups) from err
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        prune(paths, keep)
    return _with_path(backup, final)


def _write(paths: HostPaths, database: Database, work: Path, version: str, created_at: datetime,
           reason: str) -> Backup:
    schema_version = _schema_version(database, BACKUP_STEP)
    files = [_dump(database, work)]
    files += [_archive(tree, tree.source(paths), work) for tree in TREES if tree.source(paths).is_dir()]
    blobs = _registry_v2(paths) / "blobs"
    not_copied = {"registry blobs": {"path": str(blobs), "bytes": tree_size(blobs),
                                     "why": "content-addressed and never rewritten: kept in place, not copied"}}
    backup = Backup(work, version, schema_version, sum(f.size for f in files), created_at, reason, tuple(files),
                    not_copied)
    _write_synced(work / MANIFEST, json.dumps(_manifest(backup), indent=1).encode())
    _fsync(work)
    return backup


def _schema_version(database: Database, step: str) -> int:
    value = database.scalar("SELECT max(version) FROM schema_migrations", step=step)
    if not value.isdigit():
        raise InstallError("the database has no migrations applied, so it holds no appliance yet.",
                           "Check postgres_url in /etc/appliance/appliance.toml.", step=step)
    return int(value)


def _dump(database: Database, work: Path) -> BackupFile:
    target = work / DUMP
    database.run(["pg_dump", "--format=custom", "--no-password", f"--file={target}"], step=BACKUP_STEP)
    _fsync(target)
    return _described(target, "database", f"pg_dump -Fc of the database {database.name}")


def _archive(tree: Tree, source: Path, work: Path) -> BackupFile:
    target = work / tree.file

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if tree.skip(Path(info.name).name) else info

    with target.open("wb") as handle:
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(source, arcname=".", filter=keep)
        handle.flush()
        os.fsync(handle.fileno())
    return _described(target, tree.kind, tree.holds)


def _described(path: Path, kind: str, holds: str) -> BackupFile:
    return BackupFile(path.name, path.stat().st_size, _sha256(path), holds, kind)


def _manifest(backup: Backup) -> dict[str, Any]:
    return {"format": FORMAT, "version": backup.version, "schema_version": backup.schema_version,
            "created_at": _iso(backup.created_at), "reason": backup.reason,
            "size": backup.size,
            "files": [{"name": f.name, "kind": f.kind, "size": f.size, "sha256": f.sha256, "holds": f.holds}
                      for f in backup.files],
            "not_copied": backup.not_copied}


def read_backup(path: Path) -> Backup:
    """The backup at `path` as its manifest describes it; InstallError if there is none or it is unreadable."""
    try:
        data = json.loads((path / MANIFEST).read_text())
        files = tuple(BackupFile(f["name"], int(f["size"]), f["sha256"], f["holds"], f["kind"]) for f in data["files"])
        created_at = datetime.fromisoformat(data["created_at"].replace("Z", "+00:00"))
        backup = Backup(path, str(data["version"]), int(data["schema_version"]), sum(f.size for f in files),
                        created_at, str(data.get("reason", "")), files, dict(data.get("not_copied", {})))
        fmt = data["format"]
    except FileNotFoundError as err:
        raise InstallError(f"{path} is not a backup: it has no {MANIFEST}.",
                           "A backup folder is complete only with its manifest; pick another from "
                           "/var/lib/appliance/backups.", step=RESTORE_STEP) from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InstallError(f"{path / MANIFEST} is unreadable: {err}.", "Pick another backup.",
                           step=RESTORE_STEP) from err
    if fmt != FORMAT:
        raise InstallError(f"{path} is a backup of format {fmt}; this installer reads format {FORMAT}.",
                           "Restore it with the installer of the release that took it.", step=RESTORE_STEP)
    return backup


def verify_backup(path: Path) -> Backup:
    """read_backup, then every file's size and sha256 checked; refuses a changed, missing or unknown file."""
    backup = read_backup(path)
    for entry in backup.files:
        file = path / entry.name
        if (entry.kind != "database" and entry.kind not in _TREES) or Path(entry.name).name != entry.name:
            raise InstallError(f"{path / MANIFEST} lists {entry.name!r} of kind {entry.kind!r}, which no backup "
                               "holds.", "The manifest was edited; pick another backup.", step=RESTORE_STEP)
        if not file.is_file():
            raise InstallError(f"{file} is missing from the backup; nothing was changed.",
                               "Pick another backup.", step=RESTORE_STEP)
        if file.stat().st_size != entry.size or _sha256(file) != entry.sha256:
            raise InstallError(f"{file} does not match its sha256 in {MANIFEST}: the backup was changed or "
                               "damaged; nothing was changed.", "Pick another backup.", step=RESTORE_STEP)
    if not any(f.kind == "database" for f in backup.files):
        raise InstallError(f"{path} holds no database dump.", "Pick another backup.", step=RESTORE_STEP)
    return backup


def list_backups(paths: HostPaths) -> list[Backup]:
    """Complete backups, oldest first; a folder without a readable manifest is not one."""
    found = []
    if paths.backups.is_dir():
        for folder in paths.backups.iterdir():
            if folder.name.startswith(".") or not (folder / MANIFEST).is_file():
                continue
            try:
                found.append(read_backup(folder))
            except InstallError:
                continue
    return sorted(found, key=lambda b: (b.created_at, b.path.name))


def publish_summary(paths: HostPaths, *, failure: str | None = None) -> None:
    """Write paths.backup_summary: the complete backups (name, time, size, version) and the last failure."""
    previous: dict[str, Any] = {}
    with suppress(OSError, ValueError):
        previous = json.loads(paths.backup_summary.read_text())
    now = _iso(datetime.now(UTC))
    summary = {
        "backups": [{"name": b.path.name, "created_at": _iso(b.created_at), "size": b.size, "version": b.version,
                     "reason": b.reason} for b in list_backups(paths)],
        "last_success_at": now if failure is None else previous.get("last_success_at"),
        "last_failure": None if failure is None else {"at": now, "error": failure[:500]},
    }
    with suppress(OSError):  # the summary is a courtesy: a backup is not failed for want of it
        write_atomically(paths.backup_summary, json.dumps(summary, indent=1).encode(), 0o644)


def prune(paths: HostPaths, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups; returns what was deleted."""
    doomed = [b.path for b in list_backups(paths)[:-keep]]
    for folder in doomed:
        # Renamed first, so a deletion cut short leaves a dot folder, not a damaged backup.
        hidden = folder.with_name(f"{PARTIAL}deleted-{folder.name}")
        folder.rename(hidden)
        shutil.rmtree(hidden)
    return doomed


def check_restorable(paths: HostPaths, backup: Path) -> Backup:
    """The backup, once every file's sha256 matches and the current release knows its schema; changes nothing."""
    restorable = verify_backup(backup)
    known = known_schema_version(paths)
    if restorable.schema_version > known:
        raise InstallError(f"{backup} holds schema {restorable.schema_version:06d}, newer than this release "
                           f"({paths.installed_version()}) knows ({known:06d}); nothing was changed.",
                           f"Install release {restorable.version} or newer first, then restore.", step=RESTORE_STEP)
    return restorable


def restore_backup(paths: HostPaths, backup: Path, *, units: Sequence[str] = APPLIANCE_UNITS) -> Backup:
    """Put the backup's database, /etc/appliance, CA and registry metadata back; the appliance's units stop meanwhile.

    Checked before anything changes: every file's sha256, and that the current release knows the
    backup's schema. The database is restored in one transaction (an error leaves it as it was),
    then migrated forward to the current release's schema. Maintenance is the caller's.
    """
    with _locked(paths):
        restored = check_restorable(paths, backup)
        _put_back(paths, restored, units)
    return restored


def _put_back(paths: HostPaths, restored: Backup, units: Sequence[str]) -> None:
    database = Database.from_config(paths, step=RESTORE_STEP)
    _systemctl("stop", *reversed(units))
    try:
        restore_database(database, restored.path / DUMP)
        for entry in restored.files:
            tree = _TREES.get(entry.kind)
            if tree is not None and tree.restored:
                _restore_tree(restored.path / entry.name, tree.source(paths))
        check_appliance(paths, "migrate", step=RESTORE_STEP)
    finally:
        _systemctl("start", *units)


def run_restore(paths: HostPaths, backup: Path, *, actor: str, units: Sequence[str] = APPLIANCE_UNITS) -> Backup:
    """`appliance-installer restore`: checked, then restored under maintenance, then recorded in the release history.

    A backup that fails its checks is refused before maintenance is entered. If the restore
    itself fails the appliance stays in maintenance (the error says how to leave it) and the
    failure is recorded too.
    """
    version = paths.installed_version()
    if version is None:
        raise InstallError("no appliance is installed to restore into.",
                           "Install the release the backup was taken on, then restore.", step=RESTORE_STEP)
    steps: list[dict[str, Any]] = []
    started_at = datetime.now(UTC)
    with _locked(paths):
        checked = _timed(steps, "verify backup", lambda: check_restorable(paths, backup))
        reason = f"restoring the backup of {checked.created_at:%Y-%m-%d %H:%M} UTC"
        try:
            _timed(steps, "enter maintenance", lambda: check_appliance(
                paths, "maintenance", "enter", "--reason", reason, step="Enter maintenance"))
            _timed(steps, "restore", lambda: _put_back(paths, checked, units))
            _timed(steps, "leave maintenance", lambda: check_appliance(paths, "maintenance", "leave",
                                                                       step="Leave maintenance"))
        except InstallError as err:
            with suppress(InstallError):  # the restore's own error is the one to show
                _record(paths, _restore_record(checked, version, steps, started_at, actor, failed=steps[-1]["name"]))
            err.hint += ("" if "maintenance" in steps[-1]["name"] else
                         " The appliance stays in maintenance mode until then; to leave it as it is: "
                         f"APPLIANCE_CONFIG={paths.config} {paths.current}/venv/bin/appliance maintenance leave")
            raise
        _record(paths, _restore_record(checked, version, steps, started_at, actor, failed=None))
    return checked


def _timed(steps: list[dict[str, Any]], name: str, work: Callable[[], _T]) -> _T:
    started = time.monotonic()
    try:
        result = work()
    except BaseException:
        steps.append({"name": name, "seconds": round(time.monotonic() - started, 3), "outcome": "failed"})
        raise
    steps.append({"name": name, "seconds": round(time.monotonic() - started, 3), "outcome": "done"})
    return result


def _restore_record(backup: Backup, version: str, steps: list[dict[str, Any]], started_at: datetime, actor: str,
                    failed: str | None) -> dict[str, Any]:
    return {"kind": "restore", "from_version": version, "to_version": version, "manifest_sha256": None,
            "signers": [], "plan": {"backup": str(backup.path), "taken_on": backup.version,
                                    "schema_version": backup.schema_version, "size": backup.size,
                                    "created_at": _iso(backup.created_at), "reason": backup.reason},
            "steps": steps, "outcome": "failed" if failed else "succeeded", "failed_step": failed, "actor": actor,
            "started_at": _iso(started_at), "finished_at": _iso(datetime.now(UTC)), "sbom": None, "log": None}


def _record(paths: HostPaths, record: dict[str, Any]) -> None:
    paths.installer_state.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=paths.installer_state) as handle:
        json.dump(record, handle)
        handle.flush()
        check_appliance(paths, "releases", "record", "--file", handle.name, step="Record")


def describe(backup: Backup) -> list[str]:
    """What a backup holds and how big it is, as lines for the operator."""
    lines = [f"Backup {backup.path} ({_mb(backup.size)}): release {backup.version}, schema "
             f"{backup.schema_version:06d}, taken {_iso(backup.created_at)}" + (f" ({backup.reason})" if backup.reason
                                                                             else "")]
    lines += [f"  {f.name:<24} {_mb(f.size):>10}  {f.holds}" for f in backup.files]
    for what, kept in backup.not_copied.items():
        size = _mb(int(kept.get("bytes", 0)))
        lines.append(f"  not copied: {what} ({size} in {kept.get('path')}): {kept.get('why')}")
    return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def restore_database(database: Database, dump: Path) -> None:
    """Replace the appliance's schema with the dump's, in one transaction: on any error nothing changed.

    The public schema is dropped and re-made first, so tables a newer migration added do not
    survive into the older schema (a rollback, then an upgrade, would find them in the way).
    """
    with tempfile.TemporaryFile() as errors:
        script = subprocess.Popen(["pg_restore", "--no-owner", "--file=-", str(dump)], stdout=subprocess.PIPE,
                                  stderr=errors, env=database.client_env())
        assert script.stdout is not None
        try:
            result = subprocess.run(["psql", "-Xq", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                     "-c", "SET client_min_messages TO warning",
                                     "-c", "DROP SCHEMA IF EXISTS public CASCADE", "-c", "CREATE SCHEMA public",
                                     "-f", "-"], stdin=script.stdout, capture_output=True, check=False,
                                    env=database.client_env())
        finally:
            script.stdout.close()
            script.wait()
        if script.returncode != 0:
            errors.seek(0)
            raise client_error("pg_restore", errors.read(), RESTORE_STEP)
    if result.returncode != 0:
        raise client_error("psql (restoring the dump)", result.stderr, RESTORE_STEP,
                           "The database was left as it was (the restore is one transaction); fix the cause and "
                           "restore again.")


def _restore_tree(archive: Path, target: Path) -> None:
    """Unpack beside the target, then swap: the folder is the backup's as a whole, never a mix."""
    fresh = target.with_name(f".{target.name}.restoring")
    old = target.with_name(f".{target.name}.replaced")
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    fresh.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(fresh, filter="tar")
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def known_schema_version(paths: HostPaths) -> int:
    """The newest migration the current release ships, read by that release's own code."""
    python = paths.current / "venv/bin/python"
    code = "from appliance.db.migrate import available_migrations as a; print(a()[-1].version)"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout.strip().isdigit():
        raise InstallError(f"cannot read the migrations release {paths.installed_version()} knows: "
                           f"{result.stderr.strip()[-300:]}", "Check the installation: appliance-installer status",
                           step=RESTORE_STEP)
    return int(result.stdout.strip())


def _systemctl(action: str, *units: str) -> None:
    if not units:
        return
    result = subprocess.run(["systemctl", action, *units], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"systemctl {action} failed: {result.stderr.strip()[-300:]}",
                           "Read: journalctl -xe", step=RESTORE_STEP)


def tree_size(folder: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    """A file's or a folder's (its entries') writes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _with_path(backup: Backup, path: Path) -> Backup:
    return Backup(path, backup.version, backup.schema_version, backup.size, backup.created_at, backup.reason,
                  backup.files, backup.not_copied)


def _os_error(err: OSError, where: Path) -> InstallError:
    if err.errno == 28:  # ENOSPC
        free = shutil.disk_usage(where).free
        return InstallError(f"the disk holding {where} is full ({free} bytes free); the partial backup was removed.",
                            "Free space there (or delete old backups), then run the backup again.",
                            step=BACKUP_STEP)
    return InstallError(f"cannot write the backup: {err}.", f"Check {where} and its disk.", step=BACKUP_STEP)


@contextmanager
def _locked(paths: HostPaths, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """One backup or restore at a time on this host; an upgrade's backup waits for the timer's to finish."""
    paths.backups.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.backups.chmod(0o700)
    deadline = time.monotonic() + wait
    with (paths.backups / ".lock").open("a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as err:
                if time.monotonic() > deadline:
                    raise InstallError(f"another backup or restore has run on this host for over {wait:.0f} s.",
                                       "Wait for it to finish (see: systemctl status appliance-backup), then "
                                       "retry.") from err
                time.sleep(0.5)
        yield
