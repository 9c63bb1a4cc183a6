"""The support bundle's format: redacted as files are added, a manifest that checks, a summary before writing."""

from __future__ import annotations

import json
import secrets
import zipfile
from pathlib import Path

import pytest

from bundles.errors import BundleError
from bundles.support import MANIFEST, SupportBundle, check_manifest


def test_files_are_redacted_as_they_are_added_and_the_manifest_checks(tmp_path: Path) -> None:
    token = secrets.token_hex(20)
    bundle = SupportBundle("host", secrets=[token])
    bundle.add_text("journal/console.log", f"login token={token}\nok\n")
    bundle.add_json("health.json", {"session_token": "abc12345678", "sections": {"database": "ok"}})
    bundle.unavailable("relay.json", "HTTP 403: forbidden")
    written = bundle.write(tmp_path / "b.zip")
    assert check_manifest(written) == ["health.json", "journal/console.log", "relay.json"]
    with zipfile.ZipFile(written) as archive:
        everything = b"".join(archive.read(n) for n in archive.namelist())
        assert json.loads(archive.read(MANIFEST))["kind"] == "host"
        assert archive.read("relay.json") == b"unavailable: HTTP 403: forbidden\n"
    assert token.encode() not in everything and b"abc12345678" not in everything
    assert [p.name for p in tmp_path.iterdir()] == ["b.zip"]


def test_the_summary_names_every_file_with_its_size() -> None:
    bundle = SupportBundle("appliance")
    bundle.add_text("a.txt", "x" * 2000)
    bundle.add_text("b.txt", "y")
    lines = bundle.summary()
    assert lines[0].split() == ["a.txt", "2.0", "kB"] and lines[1].split()[0] == "b.txt"
    assert lines[-1].strip() == "2 files, 2.0 kB before compression"


def test_a_changed_member_fails_the_manifest_check(tmp_path: Path) -> None:
    bundle = SupportBundle("host")
    bundle.add_text("a.txt", "original")
    written = bundle.write(tmp_path / "b.zip")
    with zipfile.ZipFile(written) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    with zipfile.ZipFile(written, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, b"changed" if name == "a.txt" else data)
    with pytest.raises(BundleError, match=r"a\.txt does not match its sha256"):
        check_manifest(written)


def test_a_folder_that_cannot_be_written_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    bundle = SupportBundle("host")
    bundle.add_text("a.txt", "x")
    with pytest.raises(BundleError) as caught:
        bundle.write(tmp_path / "missing" / "b.zip")
    assert str(tmp_path / "missing") in caught.value.message and "--output-file" in caught.value.hint
