"""The manifest as pure data: canonical bytes that round-trip, and strict rules on what it may say."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bundles.errors import BundleRejected
from bundles.manifest import Manifest, Member, check_member_path, parse_manifest

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
_names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
_members = st.lists(st.tuples(st.sampled_from(["wheels", "debs", "docs", "images/base"]), _names,
                              st.integers(0, 10**12), st.sampled_from([0o644, 0o755])),
                    max_size=30, unique_by=lambda t: (t[0], t[1]))


def _manifest(members: list[Member], **changes: object) -> Manifest:
    values: dict[str, object] = {"version": "1.2.3-rc.1+build.5", "created_at": CREATED,
                                 "expires_at": CREATED + timedelta(days=90), "min_upgrade_from": "1.0.0",
                                 "members": tuple(members), **changes}
    return Manifest(**values)  # type: ignore[arg-type]


@given(_members)
def test_manifests_round_trip_through_their_canonical_bytes(raw: list[tuple[str, str, int, int]]) -> None:
    roles = {"wheels": "wheel", "debs": "deb", "docs": "docs", "images/base": "image"}
    members = sorted((Member(f"{folder}/{name}", size, "ab" * 32, roles[folder], mode)
                      for folder, name, size, mode in raw), key=lambda m: m.path)
    manifest = _manifest(members)
    assert parse_manifest(manifest.to_bytes()) == manifest
    assert manifest.to_bytes() == _manifest(members).to_bytes()  # deterministic


@pytest.mark.parametrize(("path", "problem"), [
    ("/etc/passwd", "absolute"), ("docs/../../etc", "'..'"), ("docs/./x", "'.'"), ("docs//x", "empty"),
    ("docs\\x", "backslashes"), ("docs/x\x00", "NUL"), ("docs/ x", "only letters"), ("manifest.json", "reserved"),
    ("d" * 300, "path length"),
], ids=["absolute", "dot-dot", "dot", "empty component", "backslash", "nul byte", "space", "reserved", "too long"])
def test_unsafe_member_paths_are_rejected(path: str, problem: str) -> None:
    with pytest.raises(BundleRejected, match=problem) as caught:
        check_member_path(path)
    assert caught.value.rule == "unsafe-path"


def _tampered(change: dict[str, object]) -> bytes:
    data = json.loads(_manifest([Member("docs/a", 1, "ab" * 32, "docs")]).to_bytes())
    data.update(change)
    return json.dumps(data).encode()


@pytest.mark.parametrize(("change", "rule", "fragment"), [
    ({"format_version": 2}, "format-version", "format version 2"),
    ({"product": "other"}, "manifest-invalid", "product 'other'"),
    ({"version": "1.2"}, "manifest-invalid", "not a SemVer version"),
    ({"expires_at": "2025-01-01T00:00:00Z"}, "manifest-invalid", "expires_at must be after created_at"),
    ({"members": [{"path": "docs/a", "size": -1, "sha256": "ab" * 32, "role": "docs", "mode": "0644"}]},
     "manifest-invalid", "non-negative"),
    ({"members": [{"path": "docs/a", "size": 1, "sha256": "AB" * 32, "role": "docs", "mode": "0644"}]},
     "manifest-invalid", "lowercase hex"),
    ({"members": [{"path": "docs/a", "size": 1, "sha256": "ab" * 32, "role": "wheel", "mode": "0644"}]},
     "manifest-invalid", "does not match its folder"),
    ({"members": [{"path": "docs/a", "size": 1, "sha256": "ab" * 32, "role": "docs", "mode": "4755"}]},
     "manifest-invalid", "0644 or 0755"),
    ({"members": [{"path": "docs/b", "size": 1, "sha256": "ab" * 32, "role": "docs", "mode": "0644"},
                  {"path": "docs/a", "size": 1, "sha256": "ab" * 32, "role": "docs", "mode": "0644"}]},
     "manifest-invalid", "sorted by path"),
    ({"members": [{"path": "docs/a", "size": 1, "sha256": "ab" * 32, "role": "docs", "mode": "0644"}] * 2},
     "duplicate-member", "listed twice"),
], ids=["future format", "other product", "not semver", "expires before created", "negative size",
        "uppercase hash", "role not matching folder", "setuid mode", "unsorted", "duplicate"])
def test_invalid_manifests_are_rejected_naming_the_rule(change: dict[str, object], rule: str, fragment: str) -> None:
    with pytest.raises(BundleRejected) as caught:
        parse_manifest(_tampered(change))
    assert caught.value.rule == rule
    assert fragment in caught.value.message


def test_size_by_role_adds_up() -> None:
    manifest = _manifest([Member("debs/a.deb", 10, "ab" * 32, "deb"), Member("debs/b.deb", 5, "ab" * 32, "deb"),
                          Member("docs/r", 1, "ab" * 32, "docs")])
    assert manifest.size_by_role() == {"deb": 15, "docs": 1}
    assert manifest.total_size == 16
