"""The upgrade journal on a scratch host tree: atomic writes, the order recovery undoes steps in,
undo steps that are safe to repeat, the lock, and a real SIGKILL between a step's work and its record."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from installer.errors import InstallError
from installer.install import switch_current
from installer.journal import Journal, installer_lock, load, save, unfinished, write_atomically
from installer.paths import HostPaths
from installer.ui import ConsoleUi
from installer.upgrade import KILL_AT, STEPS, Run, release_record, undo_stage


def _journal() -> Journal:
    return Journal.new("upgrade", "1.0.0", "1.1.0", list(STEPS), {"backup": "/nowhere"})


def test_a_journal_is_written_whole_and_reads_back(tmp_path: Path) -> None:
    paths = HostPaths(root=tmp_path)
    journal = _journal()
    journal.step("maintenance").state = "done"
    save(journal, paths)
    assert load(paths) == journal
    assert [p.name for p in paths.journal.parent.iterdir()] == ["journal.json"]  # no temporary left behind
    assert paths.journal.stat().st_mode & 0o777 == 0o644 and paths.installer_state.stat().st_mode & 0o777 == 0o711
    journal.outcome = "succeeded"
    save(journal, paths)
    assert unfinished(paths) is None and load(paths) is not None


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state" / "file.json"
    write_atomically(target, b"old")
    with pytest.raises(TypeError):   # the write fails midway: after the temporary file exists
        write_atomically(target, 42)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_recovery_undoes_every_step_that_began_last_first_and_skips_those_undone(tmp_path: Path) -> None:
    journal = _journal()
    for name in ("verify", "floor", "plan", "maintenance", "backup", "stage", "migrate"):
        journal.step(name).state = "done"
    journal.step("switch").state = "started"   # killed between the rename and its record
    assert [s.name for s in journal.to_undo()] == ["switch", "migrate", "stage", "backup", "maintenance", "plan",
                                                   "floor", "verify"]
    journal.step("switch").state = journal.step("migrate").state = "undone"   # a rollback killed midway
    assert [s.name for s in journal.to_undo()][:2] == ["stage", "backup"]


def test_undoing_the_stage_and_the_switch_twice_is_the_same_as_once(tmp_path: Path) -> None:
    paths = HostPaths(root=tmp_path)
    old, new = paths.release("1.0.0"), paths.release("1.1.0")
    for release in (old, new):
        (release / "venv").mkdir(parents=True)
    switch_current(paths, new)
    switch_current(paths, old)
    switch_current(paths, old)
    assert paths.installed_version() == "1.0.0"
    run = Run(_journal(), paths, ConsoleUi(Console(file=io.StringIO())))
    undo_stage(run)
    undo_stage(run)
    assert not new.exists() and old.exists()
    switch_current(paths, old)
    run.journal.to_version = "1.0.0"
    undo_stage(run)   # never removes the release `current` points at
    assert old.exists()


def test_a_second_run_is_refused_while_one_holds_the_lock(tmp_path: Path) -> None:
    paths = HostPaths(root=tmp_path)
    with installer_lock(paths), pytest.raises(InstallError, match="another appliance-installer run is in progress"), \
            installer_lock(paths):
        pass
    with installer_lock(paths):   # released with the first
        pass


KILLED = """
import sys
from pathlib import Path
from rich.console import Console
from installer.journal import Journal, save
from installer.paths import HostPaths
from installer.ui import ConsoleUi
from installer.upgrade import STEPS, Run, Step, _do

paths = HostPaths(root=Path(sys.argv[1]))
journal = Journal.new("upgrade", "1.0.0", "1.1.0", list(STEPS))
save(journal, paths)
run = Run(journal, paths, ConsoleUi(Console(stderr=True)))
step = Step("switch", "Switch", lambda run: (paths.root / "switched").write_text("yes"))
_do(run, step, journal.step("switch"))
print("survived")
"""


def test_a_run_killed_after_a_steps_work_leaves_it_started_for_recovery_to_undo(tmp_path: Path) -> None:
    env = {**os.environ, KILL_AT: "switch"}
    result = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], capture_output=True, text=True, env=env,
                            check=False)
    assert result.returncode == -9 and "survived" not in result.stdout, result.stderr
    assert (tmp_path / "switched").read_text() == "yes"
    journal = unfinished(HostPaths(root=tmp_path))
    assert journal is not None and journal.step("switch").state == "started"
    assert [s.name for s in journal.to_undo()] == ["switch"]
    assert json.loads(HostPaths(root=tmp_path).journal.read_text())["outcome"] == "running"


def test_a_downgrade_runs_as_an_upgrade_and_is_recorded_as_a_downgrade(tmp_path: Path) -> None:
    paths = HostPaths(root=tmp_path)
    signed = {"from_version": "1.3.0", "to_version": "1.2.0", "reason": "quotas", "signers": []}
    downgrade = Journal.new("upgrade", "1.3.0", "1.2.0", list(STEPS), {"downgrade_authorization": signed})
    plain = Journal.new("upgrade", "1.2.0", "1.3.0", list(STEPS), {"downgrade_authorization": None})
    assert release_record(downgrade, paths)["kind"] == "downgrade"
    assert release_record(plain, paths)["kind"] == "upgrade"
