"""Verification fails closed: a tamper matrix over real signed bundles, each case with its own rule."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bundles.errors import BundleError, BundleRejected
from bundles.layout import SIGNATURES
from bundles.tarball import read_head, replace_signatures
from bundles.verify import TrustPolicy, verify_bundle
from tests.support.bundles import ReleaseKey, build_bundle, make_key, make_stage, sign_bundle

Entry = tuple[tarfile.TarInfo, bytes]


@dataclass(frozen=True)
class Keys:
    a: ReleaseKey
    b: ReleaseKey
    c: ReleaseKey
    outsider: ReleaseKey

    def keyring(self, *keys: ReleaseKey) -> bytes:
        return b"".join(k.public for k in keys)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    return Keys(make_key(root, "a"), make_key(root, "b"), make_key(root, "c"), make_key(root, "outsider"))


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    """A bundle signed by key a, trusted by a keyring holding a."""
    root = tmp_path_factory.mktemp("signed")
    bundle = build_bundle(make_stage(root), root / "dist")
    sign_bundle(bundle, keys.a)
    return bundle


def _entries(bundle: Path) -> list[Entry]:
    with tarfile.open(bundle, "r:") as tar:
        return [(info, tar.extractfile(info).read() if info.isreg() else b"")  # type: ignore[union-attr]
                for info in tar.getmembers()]


def _write(path: Path, entries: list[Entry]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def _find(entries: list[Entry], prefix: str) -> int:
    return next(i for i, (info, _) in enumerate(entries) if info.name.startswith(prefix))


def flip_byte(prefix: str) -> Callable[[Path], None]:
    def mutate(bundle: Path) -> None:
        with tarfile.open(bundle, "r:") as tar:
            info = next(i for i in tar.getmembers() if i.name.startswith(prefix))
        with bundle.open("r+b") as raw:
            raw.seek(info.offset_data + info.size // 2)
            byte = raw.read(1)
            raw.seek(-1, 1)
            raw.write(bytes([byte[0] ^ 0x01]))
    return mutate


def rewrite(change: Callable[[list[Entry]], list[Entry]]) -> Callable[[Path], None]:
    def mutate(bundle: Path) -> None:
        _write(bundle, change(_entries(bundle)))
    return mutate


def _edit_manifest(entries: list[Entry]) -> list[Entry]:
    info, data = entries[0]
    return [(info, data.replace(b'"version": "1.2.0"', b'"version": "9.2.0"')), *entries[1:]]


def _drop_signatures(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e[0].name != SIGNATURES]


def _append(entries: list[Entry]) -> list[Entry]:
    extra = tarfile.TarInfo("docs/extra.sh")
    return [*entries, (extra, b"#!/bin/sh\nrm -rf /\n")]


def _remove_last(entries: list[Entry]) -> list[Entry]:
    return entries[:-1]


def _remove_middle(entries: list[Entry]) -> list[Entry]:
    index = _find(entries, "docs/")
    return entries[:index] + entries[index + 1:]


def _duplicate(entries: list[Entry]) -> list[Entry]:
    index = _find(entries, "docs/")
    return [*entries[: index + 1], entries[index], *entries[index + 1:]]


def _reorder(entries: list[Entry]) -> list[Entry]:
    i, j = _find(entries, "debs/"), _find(entries, "docs/")
    entries[i], entries[j] = entries[j], entries[i]
    return entries


def _rename(new_name: str) -> Callable[[list[Entry]], list[Entry]]:
    def change(entries: list[Entry]) -> list[Entry]:
        index = _find(entries, "docs/")
        entries[index][0].name = new_name
        return entries
    return change


def _to_link(kind: bytes, target: str = "/etc/shadow") -> Callable[[list[Entry]], list[Entry]]:
    def change(entries: list[Entry]) -> list[Entry]:
        index = _find(entries, "docs/")
        info = entries[index][0]
        info.type, info.linkname = kind, target
        entries[index] = (info, b"")
        return entries
    return change


def _grow(entries: list[Entry]) -> list[Entry]:
    index = _find(entries, "docs/")
    entries[index] = (entries[index][0], entries[index][1] + b"\nextra line\n")
    return entries


def _chmod(entries: list[Entry]) -> list[Entry]:
    index = _find(entries, "docs/")
    entries[index][0].mode = 0o755
    return entries


def _truncate(bundle: Path) -> None:
    with bundle.open("r+b") as raw:
        raw.truncate(bundle.stat().st_size // 2)


def _trailing(bundle: Path) -> None:
    with bundle.open("ab") as raw:
        raw.write(b"#!/bin/sh\necho hidden payload\n")


ROLE_MEMBERS = ["installer/", "wheels/flask", "debs/nginx", "terraform/", "providers/", "images/", "playbooks/site",
                "docs/", "sbom.cdx.json"]

# (id, mutation, expected rule, fragment of the message)
MATRIX: list[tuple[str, Callable[[Path], None], str, str]] = [
    *[(f"one flipped byte in {p.rstrip('/')}", flip_byte(p), "hash-mismatch", f"member {p}") for p in ROLE_MEMBERS],
    ("manifest edited", rewrite(_edit_manifest), "bad-signature", "does not match manifest.json"),
    ("signature removed", rewrite(_drop_signatures), "unsigned", "second member must be manifest.json.sig"),
    ("member appended", rewrite(_append), "unexpected-member", "member docs/extra.sh: is not listed"),
    ("last member removed", rewrite(_remove_last), "missing-member", "listed in the manifest but not in the bundle"),
    ("middle member removed", rewrite(_remove_middle), "out-of-order", "members removed or reordered"),
    ("member duplicated", rewrite(_duplicate), "duplicate-member", "appears twice"),
    ("members reordered", rewrite(_reorder), "out-of-order", "where the manifest lists debs/"),
    ("member renamed to ../x", rewrite(_rename("../x")), "unsafe-path", "'..' path components"),
    ("member renamed to /etc/x", rewrite(_rename("/etc/x")), "unsafe-path", "absolute paths"),
    ("member renamed", rewrite(_rename("docs/README.txt")), "unexpected-member", "member docs/README.txt"),
    ("member replaced by a symlink", rewrite(_to_link(tarfile.SYMTYPE)), "not-regular-file", "is a symlink"),
    ("member replaced by a hard link", rewrite(_to_link(tarfile.LNKTYPE, "debs/Packages")), "not-regular-file",
     "is a hard link"),
    ("member replaced by a device", rewrite(_to_link(tarfile.CHRTYPE)), "not-regular-file", "is a device file"),
    ("member larger than declared", rewrite(_grow), "size-larger", "the manifest says"),
    ("member made executable", rewrite(_chmod), "mode-mismatch", "has mode 0755"),
    ("file truncated", _truncate, "truncated", "damaged or cut short"),
    ("bytes after the archive", _trailing, "trailing-data", "follow the end of the archive"),
]


@pytest.mark.parametrize(("mutate", "rule", "fragment"), [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX])
def test_tampering_is_rejected_with_its_own_rule(signed: Path, keys: Keys, tmp_path: Path,
                                                  mutate: Callable[[Path], None], rule: str, fragment: str) -> None:
    bundle = tmp_path / signed.name
    bundle.write_bytes(signed.read_bytes())
    mutate(bundle)
    target = tmp_path / "extracted"
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, TrustPolicy(keys.keyring(keys.a)), extract_to=target)
    assert caught.value.rule == rule
    assert fragment in caught.value.message
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [signed.name]  # no temp folder left behind


@pytest.mark.parametrize(("signers", "trusted", "threshold", "rule"), [
    (("outsider",), ("a", "b", "c"), 1, "untrusted-signer"),
    (("a",), ("a", "b", "c"), 2, "threshold"),
    (("a", "outsider"), ("a", "b", "c"), 2, "threshold"),
], ids=["signed by an untrusted key", "too few signers for 2 of 3", "an untrusted second signer does not count"])
def test_signer_policy(signed: Path, keys: Keys, tmp_path: Path, signers: tuple[str, ...], trusted: tuple[str, ...],
                       threshold: int, rule: str) -> None:
    bundle = _resigned(signed, tmp_path, keys, signers)
    policy = TrustPolicy(keys.keyring(*(getattr(keys, k) for k in trusted)), threshold=threshold)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, policy)
    assert caught.value.rule == rule


def test_two_of_three_distinct_keys_pass_and_a_repeated_signer_counts_once(signed: Path, keys: Keys,
                                                                           tmp_path: Path) -> None:
    policy = TrustPolicy(keys.keyring(keys.a, keys.b, keys.c), threshold=2)
    good = verify_bundle(_resigned(signed, tmp_path / "good", keys, ("a", "c")), policy)
    assert {s.fingerprint for s in good.signers} == {keys.a.fingerprint, keys.c.fingerprint}
    with pytest.raises(BundleRejected, match="1 of the required 2"):
        verify_bundle(_resigned(signed, tmp_path / "twice", keys, ("a", "a")), policy)


def _resigned(source: Path, folder: Path, keys: Keys, signers: tuple[str, ...]) -> Path:
    from bundles.signatures import sign_manifest

    folder.mkdir(parents=True, exist_ok=True)
    bundle = folder / source.name
    bundle.write_bytes(source.read_bytes())
    manifest, _, _ = read_head(bundle)
    replace_signatures(bundle, b"".join(sign_manifest(manifest, getattr(keys, k).fingerprint, getattr(keys, k).home)
                                        for k in signers))
    return bundle


def test_a_valid_bundle_verifies_and_extracts_exactly_its_members(signed: Path, keys: Keys, tmp_path: Path) -> None:
    result = verify_bundle(signed, TrustPolicy(keys.keyring(keys.a)), extract_to=tmp_path / "out")
    listed = {m.path for m in result.manifest.members}
    extracted = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert extracted == listed
    assert (tmp_path / "out" / "installer" / "appliance-installer").stat().st_mode & 0o777 == 0o755
    receipt = result.receipt()
    assert receipt["signers"][0]["fingerprint"] == keys.a.fingerprint
    assert receipt["manifest_sha256"] == result.manifest_sha256
    assert receipt["overrides"] == []


def test_an_expired_bundle_names_its_expiry_and_the_override_is_recorded(keys: Keys, tmp_path: Path) -> None:
    old = datetime(2024, 1, 1, tzinfo=UTC)
    bundle = build_bundle(make_stage(tmp_path), tmp_path / "dist", created=old, expires_after=timedelta(days=30))
    sign_bundle(bundle, keys.a)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, TrustPolicy(keys.keyring(keys.a)))
    assert caught.value.rule == "expired"
    assert "expired on 2024-01-31 00:00 UTC" in caught.value.message
    result = verify_bundle(bundle, TrustPolicy(keys.keyring(keys.a), accept_expired_reason="RTC battery dead"))
    assert result.overrides == ["accepted a bundle that expired on 2024-01-31 00:00 UTC: RTC battery dead"]


@pytest.mark.parametrize(("installed", "rule"), [("1.3.0", "rollback"), ("0.9.0", "upgrade-path")],
                         ids=["older than installed", "installed too old to upgrade from"])
def test_version_policy(signed: Path, keys: Keys, installed: str, rule: str) -> None:
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(signed, TrustPolicy(keys.keyring(keys.a), installed_version=installed))
    assert caught.value.rule == rule


@pytest.mark.parametrize("installed", ["1.0.0", "1.2.0"], ids=["upgrade", "same version again"])
def test_allowed_upgrades_pass(signed: Path, keys: Keys, installed: str) -> None:
    assert verify_bundle(signed, TrustPolicy(keys.keyring(keys.a), installed_version=installed))


def test_signature_checks_cannot_be_turned_off(signed: Path, keys: Keys) -> None:
    with pytest.raises(BundleError, match="threshold must be at least 1"):
        verify_bundle(signed, TrustPolicy(keys.keyring(keys.a), threshold=0))
    with pytest.raises(BundleError, match="holds no public keys"):
        verify_bundle(signed, TrustPolicy(b""))


def test_unsigned_build_output_is_refused(keys: Keys, tmp_path: Path) -> None:
    bundle = build_bundle(make_stage(tmp_path), tmp_path / "dist")
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, TrustPolicy(keys.keyring(keys.a)))
    assert caught.value.rule == "unsigned"


def test_manifest_is_checked_before_any_payload_is_read(signed: Path, keys: Keys, tmp_path: Path) -> None:
    """A bad signature is reported even when the payload is also damaged: payload is never reached."""
    bundle = tmp_path / signed.name
    bundle.write_bytes(signed.read_bytes())
    rewrite(_edit_manifest)(bundle)
    _truncate(bundle)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, TrustPolicy(keys.keyring(keys.a)))
    assert caught.value.rule == "bad-signature"



def test_an_extracted_release_is_readable_by_service_users(signed: Path, keys: Keys, tmp_path: Path) -> None:
    verify_bundle(signed, TrustPolicy(keys.keyring(keys.a)), extract_to=tmp_path / "release")
    assert (tmp_path / "release").stat().st_mode & 0o777 == 0o755
