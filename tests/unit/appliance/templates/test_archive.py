"""Template archives: deterministic, and nothing but regular files inside the template is unpacked."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from appliance.provisionerd.unpack import unsafe_member
from appliance.templates.archive import source_archive

pytestmark = pytest.mark.unit


def _member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


@pytest.mark.parametrize(("name", "kind", "why"), [
    ("link", tarfile.SYMTYPE, "not a regular file"),
    ("hard", tarfile.LNKTYPE, "not a regular file"),
    ("dev", tarfile.CHRTYPE, "not a regular file"),
    ("../escape.tf", tarfile.REGTYPE, "outside the template"),
    ("/etc/passwd", tarfile.REGTYPE, "outside the template"),
    ("a/../../b.tf", tarfile.REGTYPE, "outside the template"),
])
def test_links_devices_and_escaping_paths_are_refused(name: str, kind: bytes, why: str) -> None:
    problem = unsafe_member(_member(name, kind))
    assert problem is not None and why in problem and name in problem


def test_files_and_directories_inside_are_accepted() -> None:
    assert unsafe_member(_member("main.tf")) is None
    assert unsafe_member(_member("modules/net", tarfile.DIRTYPE)) is None


def test_the_archive_is_the_same_bytes_for_the_same_files(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text("resource \"terraform_data\" \"x\" {}\n")
    (tmp_path / "terraform.tfstate").write_text("{}")
    first = source_archive(tmp_path)
    (tmp_path / "main.tf").touch()
    assert source_archive(tmp_path) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["main.tf"]
