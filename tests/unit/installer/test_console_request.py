"""The root side of a console upgrade: the request is taken once and trusted in nothing; the units render."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest

from installer.console_request import REQUEST, take_request, upgrade_args
from installer.errors import InstallError

pytestmark = pytest.mark.unit

ROLE = Path(__file__).resolve().parents[3] / "playbooks" / "roles" / "upgrade"
BUNDLE = "0123456789abcdef.bundle"
SHA = "a" * 64


def _request(spool: Path, **fields: object) -> None:
    (spool / BUNDLE).write_bytes(b"bundle")
    (spool / REQUEST).write_text(json.dumps({"bundle": BUNDLE, "manifest_sha256": SHA, "actor": "owner",
                                             "requested_at": "2026-11-30T00:00:00Z", **fields}))


def test_a_request_becomes_the_upgrade_command_and_is_removed(tmp_path: Path) -> None:
    _request(tmp_path)
    request = take_request(tmp_path)
    assert upgrade_args(request) == ["upgrade", str(tmp_path / BUNDLE), "--yes", "--expect-manifest", SHA,
                                     "--actor", "console:owner"]
    assert not (tmp_path / REQUEST).exists()


@pytest.mark.parametrize(("fields", "problem"), [
    ({"bundle": "../../etc/shadow"}, "not the name of an upload"),
    ({"bundle": "fedcba9876543210.bundle"}, "does not exist"),
    ({"manifest_sha256": "abc"}, "not 64 hex digits"),
    ({"actor": "owner\nroot"}, "not one line"),
])
def test_a_bad_request_is_refused_and_removed(tmp_path: Path, fields: dict[str, object], problem: str) -> None:
    _request(tmp_path, **fields)
    with pytest.raises(InstallError, match=problem):
        take_request(tmp_path)
    assert not (tmp_path / REQUEST).exists()


def test_a_linked_bundle_or_request_is_refused(tmp_path: Path) -> None:
    _request(tmp_path)
    (tmp_path / BUNDLE).unlink()
    (tmp_path / BUNDLE).symlink_to("/etc/hostname")
    with pytest.raises(InstallError, match="not a regular file"):
        take_request(tmp_path)
    (tmp_path / "elsewhere.json").write_text("{}")
    (tmp_path / REQUEST).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(InstallError, match="cannot be opened"):
        take_request(tmp_path)
    assert not (tmp_path / REQUEST).is_symlink() and (tmp_path / "elsewhere.json").exists()


def _render(name: str) -> str:
    template = jinja2.Template((ROLE / "templates" / f"{name}.j2").read_text(), undefined=jinja2.StrictUndefined)
    return template.render(appliance_upgrade_spool_dir="/var/lib/appliance/upgrade-requests",
                           upgrade_installer="/opt/appliance/current/installer/appliance-installer")


def test_the_path_unit_starts_the_root_service_on_the_request() -> None:
    path_unit = _render("appliance-upgrade.path")
    assert "PathExists=/var/lib/appliance/upgrade-requests/apply.json" in path_unit
    assert "Unit=appliance-upgrade.service" in path_unit
    service = _render("appliance-upgrade.service")
    assert "Type=oneshot" in service and "User=root" in service
    assert ("ExecStart=/opt/appliance/current/installer/appliance-installer apply-request "
            "--spool /var/lib/appliance/upgrade-requests") in service
