"""`appliance maintenance` and `appliance releases` as the installer runs them: idempotent, clear on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.appliance.releases.conftest import Admin


def receipt(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "install", "from_version": None, "to_version": "1.0.0", "manifest_sha256": "ab" * 32,
        "signers": [{"fingerprint": "F" * 40, "user_id": "Release <r@example.org>"}], "plan": None,
        "steps": [{"name": "verify", "seconds": 1.5, "outcome": "done"}], "outcome": "succeeded",
        "failed_step": None, "actor": "root", "started_at": "2026-01-01T10:00:00+00:00",
        "finished_at": "2026-01-01T10:03:00+00:00", "sbom": None, "log": None}
    return base | changes


def write(tmp_path: Path, name: str, data: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_maintenance_enter_leave_and_status_are_idempotent(admin: Admin) -> None:
    assert json.loads(admin("maintenance", "status", "--output", "json").stdout) == {
        "active": False, "reason": None, "since": None}
    admin("maintenance", "enter", "--reason", "upgrade to 1.1.0", "--drain-timeout", "5")
    first = json.loads(admin("maintenance", "status", "--output", "json").stdout)
    assert first["active"] and first["reason"] == "upgrade to 1.1.0" and first["since"]
    again = admin("maintenance", "enter", "--reason", "upgrade to 1.1.0")
    assert "Maintenance is on" in again.stdout
    assert json.loads(admin("maintenance", "status", "--output", "json").stdout) == first
    admin("maintenance", "leave")
    assert "already off" in admin("maintenance", "leave").stdout
    assert json.loads(admin("maintenance", "status", "--output", "json").stdout)["active"] is False


def test_record_twice_stores_once_and_floor_is_the_highest_success(admin: Admin, tmp_path: Path) -> None:
    first = write(tmp_path, "a.json", receipt())
    assert admin("releases", "record", "--file", first).stdout.startswith("recorded")
    assert admin("releases", "record", "--file", first).stdout.startswith("already recorded")
    admin("releases", "record", "--file", write(tmp_path, "b.json", receipt(
        kind="upgrade", from_version="1.0.0", to_version="1.10.0", started_at="2026-02-01T10:00:00+00:00",
        finished_at="2026-02-01T10:02:00+00:00")))
    admin("releases", "record", "--file", write(tmp_path, "c.json", receipt(
        kind="upgrade", from_version="1.10.0", to_version="2.0.0", outcome="rolled-back", failed_step="migrate",
        started_at="2026-03-01T10:00:00+00:00", finished_at="2026-03-01T10:02:00+00:00")))
    # 1.10.0 > 1.9 by SemVer, not by text; the rolled-back 2.0.0 does not count.
    assert admin("releases", "floor").stdout.strip() == "1.10.0"


def test_a_bad_receipt_is_a_clear_error(admin: Admin, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    done = admin("releases", "record", "--file", str(broken), ok=False)
    assert done.returncode == 1 and "is not JSON" in done.stderr and "Traceback" not in done.stderr
    wrong = admin("releases", "record", "--file", write(tmp_path, "wrong.json", receipt(to_version="latest")),
                  ok=False)
    assert wrong.returncode == 1 and "to_version" in wrong.stderr and "SemVer" in wrong.stderr
    assert "Traceback" not in wrong.stderr
