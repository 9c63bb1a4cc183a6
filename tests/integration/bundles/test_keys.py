"""Downgrade authorizations and release-key rotation, verified with real GPG keys made at test time."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bundles.downgrade import authorize, write_signed
from bundles.errors import BundleRejected
from bundles.layout import ROTATION_KEYRING
from bundles.verify import TrustPolicy, VerifiedBundle, verify_bundle
from tests.support.bundles import (
    ReleaseKey,
    add_rotation,
    build_bundle,
    make_expired_key,
    make_key,
    make_stage,
    sign_at,
    sign_bundle,
)

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
# The expired key was made 400 days ago and lived 30: it signed on day 10, while it was valid.
EXPIRED_MADE = TODAY - timedelta(days=400)
SIGNED_WHILE_VALID = EXPIRED_MADE + timedelta(days=10)


@dataclass(frozen=True)
class Keys:
    a: ReleaseKey
    b: ReleaseKey
    outsider: ReleaseKey
    new: ReleaseKey
    expired: ReleaseKey

    @staticmethod
    def ring(*keys: ReleaseKey) -> bytes:
        return b"".join(k.public for k in keys)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    return Keys(make_key(root, "a"), make_key(root, "b"), make_key(root, "outsider"), make_key(root, "new"),
                make_expired_key(root, "expired", made=EXPIRED_MADE, lifetime_days=30))


@pytest.fixture(scope="module")
def older(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    """Release 1.2.0 signed by key a: older than the installed 1.3.0."""
    root = tmp_path_factory.mktemp("older")
    bundle = build_bundle(make_stage(root), root / "dist", version="1.2.0", created=TODAY)
    sign_bundle(bundle, keys.a)
    return bundle


def _authorization(folder: Path, *signers: ReleaseKey, pair: tuple[str, str] = ("1.3.0", "1.2.0"),
                   issued: datetime | None = None, days: int = 7) -> bytes:
    out = folder / f"downgrade-{len(list(folder.glob('downgrade-*')))}.json"
    auth = authorize(*pair, "1.3.0 corrupts workspace quotas", valid_for=timedelta(days=days), now=issued)
    for key in signers:
        write_signed(out, auth.document(), (key.fingerprint,), key.home, None)
    return out.read_bytes()


def _downgrade(bundle: Path, keyring: bytes, authorization: bytes | None, threshold: int = 1) -> VerifiedBundle:
    return verify_bundle(bundle, TrustPolicy(keyring, threshold=threshold, installed_version="1.3.0",
                                             downgrade_authorization=authorization))


# -- downgrades --------------------------------------------------------------------------------------


def test_an_older_bundle_is_refused_without_authorization_and_the_hint_names_the_command(
        older: Path, keys: Keys) -> None:
    with pytest.raises(BundleRejected) as caught:
        _downgrade(older, keys.ring(keys.a), None)
    assert caught.value.rule == "rollback"
    assert "appliance-bundle authorize-downgrade --from 1.3.0 --to 1.2.0" in caught.value.hint
    assert "--downgrade-authorization FILE" in caught.value.hint


def test_an_authorization_for_exactly_the_installed_to_bundle_pair_lets_it_through_and_is_recorded(
        older: Path, keys: Keys, tmp_path: Path) -> None:
    result = verify_bundle(older, TrustPolicy(keys.ring(keys.a), installed_version="1.3.0",
                                              downgrade_authorization=_authorization(tmp_path, keys.a)),
                           extract_to=tmp_path / "release")
    assert result.manifest.version == "1.2.0"
    recorded = result.receipt()["downgrade_authorization"]
    assert (recorded["from_version"], recorded["to_version"]) == ("1.3.0", "1.2.0")
    assert recorded["reason"] == "1.3.0 corrupts workspace quotas"
    assert [s["fingerprint"] for s in recorded["signers"]] == [keys.a.fingerprint]
    assert (tmp_path / "release" / "docs" / "README.md").exists()


@pytest.mark.parametrize("pair", [("1.4.0", "1.2.0"), ("1.3.0", "1.1.0")],
                         ids=["another installed version", "another target version"])
def test_an_authorization_for_another_pair_is_refused(older: Path, keys: Keys, tmp_path: Path,
                                                      pair: tuple[str, str]) -> None:
    with pytest.raises(BundleRejected) as caught:
        _downgrade(older, keys.ring(keys.a), _authorization(tmp_path, keys.a, pair=pair))
    assert caught.value.rule == "downgrade-mismatch"
    assert f"allows appliance {pair[0]} -> {pair[1]}, not 1.3.0 (installed) -> 1.2.0" in caught.value.message


def test_an_expired_authorization_is_refused(older: Path, keys: Keys, tmp_path: Path) -> None:
    issued = TODAY - timedelta(days=10)
    with pytest.raises(BundleRejected) as caught:
        _downgrade(older, keys.ring(keys.a), _authorization(tmp_path, keys.a, issued=issued, days=2))
    assert caught.value.rule == "downgrade-expired"
    assert f"expired on {issued + timedelta(days=2):%Y-%m-%d}" in caught.value.message


def test_a_tampered_authorization_is_refused(older: Path, keys: Keys, tmp_path: Path) -> None:
    """Someone widens a signed 1.3.0 -> 1.2.0 permission's reason: the signature no longer matches."""
    envelope = json.loads(_authorization(tmp_path, keys.a))
    envelope["document"] = envelope["document"].replace("corrupts workspace quotas", "is fine, just because")
    with pytest.raises(BundleRejected) as caught:
        _downgrade(older, keys.ring(keys.a), json.dumps(envelope).encode())
    assert caught.value.rule == "downgrade-bad-signature"
    assert "does not match the downgrade authorization" in caught.value.message


@pytest.mark.parametrize(("signers", "rule"), [(("a",), "downgrade-threshold"),
                                               (("outsider",), "downgrade-untrusted-signer"),
                                               (("a", "outsider"), "downgrade-threshold")],
                         ids=["one of two", "an untrusted key", "an untrusted second signer does not count"])
def test_an_authorization_under_the_threshold_is_refused(older: Path, keys: Keys, tmp_path: Path,
                                                         signers: tuple[str, ...], rule: str) -> None:
    """The bundle itself meets 2 of 2 (a and b); its authorization must too."""
    bundle = tmp_path / older.name
    bundle.write_bytes(older.read_bytes())
    sign_bundle(bundle, keys.b)
    authorization = _authorization(tmp_path, *(getattr(keys, k) for k in signers))
    with pytest.raises(BundleRejected) as caught:
        _downgrade(bundle, keys.ring(keys.a, keys.b), authorization, threshold=2)
    assert caught.value.rule == rule
    assert _downgrade(bundle, keys.ring(keys.a, keys.b), _authorization(tmp_path, keys.a, keys.b), threshold=2)


def test_the_release_tools_write_an_authorization_that_verify_accepts(older: Path, keys: Keys,
                                                                      tmp_path: Path) -> None:
    """Two key holders on their own machines: authorize-downgrade, then countersign-downgrade."""
    keyring = tmp_path / "release-keys.asc"
    keyring.write_bytes(keys.ring(keys.a, keys.b))
    bundle = tmp_path / older.name
    bundle.write_bytes(older.read_bytes())
    sign_bundle(bundle, keys.b)
    out = tmp_path / "downgrade.json"
    _bundle_tool("authorize-downgrade", "--from", "1.3.0", "--to", "1.2.0", "--reason", "bad quotas",
                 "--key", keys.a.fingerprint, "--gnupghome", str(keys.a.home), "--output", str(out))
    verify = ["verify", str(bundle), "--keyring", str(keyring), "--threshold", "2", "--installed-version", "1.3.0",
              "--downgrade-authorization", str(out)]
    refused = _bundle_tool(*verify, check=False)
    assert refused.returncode == 3
    assert "downgrade-threshold" in refused.stderr
    _bundle_tool("countersign-downgrade", str(out), "--key", keys.b.fingerprint, "--gnupghome", str(keys.b.home))
    accepted = _bundle_tool(*verify)
    assert "downgrade 1.3.0 -> 1.2.0 authorized: bad quotas" in accepted.stdout
    not_older = _bundle_tool("authorize-downgrade", "--from", "1.2.0", "--to", "1.3.0", "--reason", "x", "--key",
                             keys.a.fingerprint, "--gnupghome", str(keys.a.home), "--output",
                             str(tmp_path / "up.json"), check=False)
    assert not_older.returncode == 1
    assert "is not older than --from 1.2.0" in not_older.stderr


def _bundle_tool(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "bundles", *args], capture_output=True, text=True, check=False,
                            timeout=120)
    assert not check or result.returncode == 0, result.stderr
    return result


# -- key rotation ------------------------------------------------------------------------------------


def _rotating(folder: Path, new_keyring: bytes, rotation_signers: tuple[ReleaseKey, ...],
              *bundle_signers: ReleaseKey, version: str = "1.3.0") -> Path:
    stage = make_stage(folder)
    add_rotation(stage, new_keyring, *rotation_signers)
    bundle = build_bundle(stage, folder / "dist", version=version, created=TODAY)
    sign_bundle(bundle, *bundle_signers)
    return bundle


def test_a_rotation_signed_by_the_current_and_the_new_keys_is_verified_and_exposed(keys: Keys,
                                                                                    tmp_path: Path) -> None:
    bundle = _rotating(tmp_path, keys.new.public, (keys.a, keys.new), keys.a)
    result = verify_bundle(bundle, TrustPolicy(keys.ring(keys.a)))
    assert result.new_keyring == keys.new.public
    assert ROTATION_KEYRING in {m.path for m in result.manifest.members}, "a listed, hashed member like any other"
    rotation = result.receipt()["key_rotation"]
    assert [s["fingerprint"] for s in rotation["signed_by_current"]] == [keys.a.fingerprint]
    assert [s["fingerprint"] for s in rotation["signed_by_new"]] == [keys.new.fingerprint]


@pytest.mark.parametrize(("signers", "rule", "fragment"), [
    (("outsider", "new"), "key-rotation-untrusted-signer", "not signed by the keys this host trusts now"),
    (("a",), "key-rotation-untrusted-signer", "not signed by the new keys themselves"),
], ids=["signed by an untrusted key", "the new key never signed"])
def test_a_rotation_without_both_signatures_is_refused_and_nothing_is_extracted(
        keys: Keys, tmp_path: Path, signers: tuple[str, ...], rule: str, fragment: str) -> None:
    bundle = _rotating(tmp_path, keys.new.public, tuple(getattr(keys, k) for k in signers), keys.a)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, TrustPolicy(keys.ring(keys.a)), extract_to=tmp_path / "release")
    assert caught.value.rule == rule
    assert fragment in caught.value.message
    assert "nothing was pinned" in caught.value.hint
    assert not (tmp_path / "release").exists()


def test_a_rotation_under_the_current_threshold_is_refused(keys: Keys, tmp_path: Path) -> None:
    bundle = _rotating(tmp_path, keys.new.public, (keys.a, keys.new), keys.a, keys.b)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, TrustPolicy(keys.ring(keys.a, keys.b), threshold=2))
    assert caught.value.rule == "key-rotation-threshold"


def test_a_bundle_carrying_the_keys_already_trusted_rotates_nothing(keys: Keys, tmp_path: Path) -> None:
    bundle = _rotating(tmp_path, keys.new.public, (keys.new,), keys.new, version="1.4.0")
    assert verify_bundle(bundle, TrustPolicy(keys.ring(keys.new))).new_keyring is None


def test_a_rotation_whose_signatures_are_missing_is_refused(keys: Keys, tmp_path: Path) -> None:
    stage = make_stage(tmp_path)
    (stage / ROTATION_KEYRING).parent.mkdir()
    (stage / ROTATION_KEYRING).write_bytes(keys.new.public)
    bundle = build_bundle(stage, tmp_path / "dist", created=TODAY)
    sign_bundle(bundle, keys.a)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, TrustPolicy(keys.ring(keys.a)))
    assert caught.value.rule == "key-rotation"


def test_once_the_old_key_expired_a_rotation_it_signed_while_valid_no_longer_counts(keys: Keys,
                                                                                    tmp_path: Path) -> None:
    """The host missed the rotation window: both the bundle and the keyring were signed by the old key while it
    was valid, and by the new key; the host trusts only the old one, now expired. Refused, with the way out."""
    stage = make_stage(tmp_path)
    keyring = keys.ring(keys.new)
    add_rotation(stage, keyring, keys.new)
    signatures = stage / f"{ROTATION_KEYRING}.sig"
    signatures.write_bytes(signatures.read_bytes() + sign_at(keyring, keys.expired, SIGNED_WHILE_VALID))
    bundle = build_bundle(stage, tmp_path / "dist", version="1.3.0", created=TODAY)
    sign_bundle(bundle, keys.new)
    _add_signature(bundle, keys.expired, SIGNED_WHILE_VALID)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(bundle, TrustPolicy(keys.ring(keys.expired)), extract_to=tmp_path / "release")
    assert caught.value.rule == "expired-key"
    assert "key or signature expired" in caught.value.message
    assert "replace /etc/appliance/trusted-keys.pgp by hand" in caught.value.hint
    assert not (tmp_path / "release").exists()


def test_a_host_that_rotated_in_time_is_not_blocked_by_the_old_key_expiring(keys: Keys, tmp_path: Path) -> None:
    """Pinned: the old key (now expired) and the new one. A bundle by the new key passes; the old key's doesn't."""
    pinned = keys.ring(keys.expired, keys.new)
    by_new = build_bundle(make_stage(tmp_path / "new"), tmp_path / "new" / "dist", version="1.4.0", created=TODAY)
    sign_bundle(by_new, keys.new)
    assert verify_bundle(by_new, TrustPolicy(pinned)).signers[0].fingerprint == keys.new.fingerprint
    by_old = build_bundle(make_stage(tmp_path / "old"), tmp_path / "old" / "dist", version="1.4.0", created=TODAY)
    _add_signature(by_old, keys.expired, SIGNED_WHILE_VALID)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(by_old, TrustPolicy(pinned))
    assert caught.value.rule == "expired-key"


def _add_signature(bundle: Path, key: ReleaseKey, when: datetime) -> None:
    from bundles.tarball import read_head, replace_signatures

    manifest, existing, _ = read_head(bundle)
    replace_signatures(bundle, (existing or b"") + sign_at(manifest, key, when))


def test_the_release_tools_carry_a_rotation_that_verify_reports(keys: Keys, tmp_path: Path) -> None:
    """rotate-keys by the current and the new key holder, then build --rotate-keyring, sign, verify."""
    stage = make_stage(tmp_path)
    keyring = tmp_path / "next-release-keys.asc"
    keyring.write_bytes(keys.ring(keys.new))
    trusted = tmp_path / "release-keys.asc"
    trusted.write_bytes(keys.ring(keys.a))
    for key in (keys.a, keys.new):
        _bundle_tool("rotate-keys", str(keyring), "--key", key.fingerprint, "--gnupghome", str(key.home))
    _bundle_tool("build", "--stage", str(stage), "--rotate-keyring", str(keyring), "--output", str(tmp_path / "dist"))
    bundle = next((tmp_path / "dist").glob("*.bundle"))
    _bundle_tool("sign", str(bundle), "--key", keys.a.fingerprint, "--gnupghome", str(keys.a.home))
    report = json.loads(_bundle_tool("verify", str(bundle), "--keyring", str(trusted), "--output", "json").stdout)
    assert [s["fingerprint"] for s in report["key_rotation"]["signed_by_new"]] == [keys.new.fingerprint]
