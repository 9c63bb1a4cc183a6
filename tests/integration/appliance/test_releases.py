"""The release history: `appliance releases` as the installer runs it, and the receipts in the API and console."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin_cli import Admin, admin_cli, maintenance_off
from tests.support.api import Api, console_session
from tests.support.server import LiveServer


@pytest.fixture
def admin(api: Api, shared_conninfo: str) -> Iterator[Admin]:
    """`appliance ARGS` against the shared database (emptied by `api`); leaves maintenance off afterwards."""
    yield admin_cli(shared_conninfo)
    maintenance_off(shared_conninfo)


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


def test_record_twice_stores_once_and_floor_is_the_highest_success(admin: Admin, tmp_path: Path) -> None:
    assert admin("releases", "floor").stdout == ""  # nothing installed yet: no floor
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


def test_a_bad_receipt_is_a_clear_error(shared_conninfo: str, tmp_path: Path) -> None:
    admin = admin_cli(shared_conninfo, in_process=False)  # as the installer runs it: no traceback on stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    done = admin("releases", "record", "--file", str(broken), ok=False)
    assert done.returncode == 1 and "is not JSON" in done.stderr and "Traceback" not in done.stderr
    wrong = admin("releases", "record", "--file", write(tmp_path, "wrong.json", receipt(to_version="latest")),
                  ok=False)
    assert wrong.returncode == 1 and "to_version" in wrong.stderr and "SemVer" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_an_older_schema_is_a_clear_error(empty_db: str) -> None:
    done = admin_cli(empty_db)("releases", "floor", ok=False)
    assert done.returncode == 1 and "appliance migrate" in done.stderr


def _sbom(**components: str) -> dict[str, Any]:
    return {"bomFormat": "CycloneDX", "specVersion": "1.5",
            "components": [{"type": "library", "name": name, "version": version}
                           for name, version in components.items()]}


def _record_two_upgrades(admin: Admin, tmp_path: Path) -> None:
    admin("releases", "record", "--file", write(tmp_path, "v1.json", receipt(
        sbom=_sbom(flask="3.0.0", psycopg="3.1.0", six="1.16.0"))))
    admin("releases", "record", "--file", write(tmp_path, "v2.json", receipt(
        kind="upgrade", from_version="1.0.0", to_version="1.1.0", started_at="2026-02-01T10:00:00+00:00",
        finished_at="2026-02-01T10:01:30+00:00", plan={"migrations": ["000011_extra"]},
        steps=[{"name": "backup", "seconds": 4.0, "outcome": "done"}, {"name": "migrate", "seconds": 2.5,
                                                                       "outcome": "done"}],
        sbom=_sbom(flask="3.1.0", psycopg="3.1.0", asyncssh="2.14.0"))))


def test_the_api_shows_owners_each_receipt_with_its_sbom_diff_and_refuses_members(
        admin: Admin, owner_api: Api, tmp_path: Path) -> None:
    _record_two_upgrades(admin, tmp_path)
    listed = owner_api.get("/api/v2/releases").json()
    assert [(r["kind"], r["to_version"]) for r in listed["releases"]] == [("upgrade", "1.1.0"), ("install", "1.0.0")]
    assert listed["floor"] == "1.1.0"
    detail = owner_api.get(f"/api/v2/releases/{listed['releases'][0]['id']}").json()
    assert detail["sbom_diff"] == {
        "previous_id": listed["releases"][1]["id"], "previous_version": "1.0.0",
        "added": [{"name": "asyncssh", "version": "2.14.0"}], "removed": [{"name": "six", "version": "1.16.0"}],
        "changed": [{"name": "flask", "old_version": "3.0.0", "new_version": "3.1.0"}]}
    assert [s["name"] for s in detail["steps"]] == ["backup", "migrate"] and detail["seconds"] == 90
    assert detail["signers"][0]["fingerprint"] == "F" * 40

    member = owner_api.as_user(owner_api.login(owner_api.create_user()["username"]))
    assert member.get("/api/v2/releases").status_code == 403
    assert member.get(f"/api/v2/releases/{listed['releases'][0]['id']}").status_code == 403
    assert owner_api.get(f"/api/v2/releases/{uuid.uuid4()}").status_code == 404
    assert owner_api.get("/api/v2/releases/not-an-id").status_code == 404
    auditor = owner_api.as_user(owner_api.login(owner_api.create_user(roles=["auditor"])["username"]))
    assert auditor.get("/api/v2/releases").status_code == 200


def test_the_console_releases_page_shows_the_sbom_diff(admin: Admin, owner_api: Api, server: LiveServer,
                                                     tmp_path: Path) -> None:
    _record_two_upgrades(admin, tmp_path)
    browser = console_session(server.url, "owner")
    listing = browser.get(server.url + "/releases", timeout=10)
    assert listing.status_code == 200 and "1.0.0 → <strong>1.1.0</strong>" in listing.text
    newest = owner_api.get("/api/v2/releases").json()["releases"][0]["id"]
    detail = browser.get(f"{server.url}/releases/{newest}", timeout=10).text
    assert "SBOM changes since 1.0.0" in detail
    assert '<tr class="added"><td>added</td><td>asyncssh</td><td>2.14.0</td></tr>' in detail
    assert '<tr class="changed"><td>changed</td><td>flask</td><td>3.0.0 → 3.1.0</td></tr>' in detail
    assert '<tr class="removed"><td>removed</td><td>six</td><td>1.16.0</td></tr>' in detail
    assert "000011_extra" in detail and "migrate" in detail
    member = console_session(server.url, owner_api.create_user()["username"])
    assert member.get(server.url + "/releases", timeout=10).status_code == 403
    assert ">Releases</a>" not in member.get(server.url + "/account", timeout=10).text


def test_maintenance_and_recorded_releases_leave_audit_rows(admin: Admin, owner_api: Api, tmp_path: Path) -> None:
    admin("maintenance", "enter", "--reason", "upgrade to 1.1.0")
    admin("maintenance", "leave")
    admin("releases", "record", "--file", write(tmp_path, "a.json", receipt()))
    rows = owner_api.get("/api/v2/audit", params={"limit": 10}).json()["audit_logs"]
    seen = [(r["resource_type"], r["action"], r["resource_target"]) for r in rows]
    assert ("release", "create", "install - -> 1.0.0") in seen
    changes = [r["diff"]["active"]["new"] for r in rows if r["resource_type"] == "maintenance"]
    assert changes == [False, True]  # newest first: left after entering
