"""The CA on disk: init, issue, renew, revoke, export the root; refusals leave nothing half-written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from appliance.errors import Conflict, NotFound
from appliance.pki.ca import CaSettings, CertificateAuthority, IssueRequest
from appliance.pki.keys import PkiError, generate_key, key_pem, load_key
from appliance.pki.status import pki_status

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    authority = CertificateAuthority(tmp_path / "pki", crl_urls=("https://app.test/api/v2/pki/crl.pem",))
    authority.init(PASSPHRASE, CaSettings())
    return authority


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_root_key_is_encrypted_and_the_intermediate_issues(ca: CertificateAuthority) -> None:
    assert ca.layout.root_key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(PkiError, match="encrypted and no passphrase"):
        load_key(ca.layout.root_key)
    with pytest.raises(PkiError, match="Wrong passphrase"):
        load_key(ca.layout.root_key, b"not the passphrase")
    assert load_key(ca.layout.root_key, PASSPHRASE)
    for key in (ca.layout.root_key, ca.layout.intermediate_key):
        assert key.stat().st_mode & 0o777 == 0o600
    ca.intermediate_certificate().verify_directly_issued_by(ca.root_certificate())


def test_a_short_passphrase_and_a_second_init_are_refused(tmp_path: Path, ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="too short"):
        CertificateAuthority(tmp_path / "other").init(b"short")
    with pytest.raises(PkiError, match="already exists"):
        ca.init(PASSPHRASE)


def test_issued_files_are_in_live_with_a_private_key(ca: CertificateAuthority) -> None:
    record = ca.issue(IssueRequest("web", ("app.test",), ("10.0.0.5",)))
    cert = x509.load_pem_x509_certificate(ca.layout.live_cert("web").read_bytes())
    assert f"{cert.serial_number:x}" == record.serial
    assert ca.layout.live_key("web").stat().st_mode & 0o777 == 0o600
    chain = ca.layout.live_fullchain("web").read_bytes()
    assert chain.count(b"BEGIN CERTIFICATE") == 2
    assert ca.current("web") == record


def test_issuing_an_existing_name_is_a_conflict(ca: CertificateAuthority) -> None:
    ca.issue(IssueRequest("web", ("app.test",)))
    with pytest.raises(Conflict, match="already exists"):
        ca.issue(IssueRequest("web", ("other.test",)))


def test_renewal_replaces_the_key_and_supersedes_the_old_certificate(ca: CertificateAuthority) -> None:
    old = ca.issue(IssueRequest("web", ("app.test",), days=30))
    old_key = ca.layout.live_key("web").read_bytes()
    new = ca.renew("web")
    assert new.serial != old.serial
    assert new.dns_names == old.dns_names
    assert ca.layout.live_key("web").read_bytes() != old_key
    statuses = {r.serial: r.status for r in ca.records()}
    assert statuses == {old.serial: "superseded", new.serial: "valid"}


def test_revocation_lands_in_the_crl_and_blocks_renewal(ca: CertificateAuthority) -> None:
    record = ca.issue(IssueRequest("web", ("app.test",)))
    ca.revoke(record.serial, "key-compromise")
    crl = x509.load_pem_x509_crl(ca.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(int(record.serial, 16)) is not None
    with pytest.raises(Conflict, match=r"was revoked on .* cannot be renewed"):
        ca.renew("web")
    with pytest.raises(Conflict, match="already revoked"):
        ca.revoke(record.serial, "superseded")
    with pytest.raises(NotFound):
        ca.revoke("abcdef", "superseded")


@pytest.mark.parametrize(("request_", "message"), [
    (IssueRequest("a/b", ("x.test",)), "Invalid certificate name"),
    (IssueRequest("web", ("x.test",), ("300.1.1.1",)), "Invalid IP address"),
    (IssueRequest("web", ("bad_name",)), "Invalid DNS name"),
    (IssueRequest("web", ("x.test",), days=0), "Invalid validity"),
    (IssueRequest("web"), "at least one --dns name or --ip"),
], ids=["name with a slash", "unparsable ip", "bad dns name", "zero days", "no names at all"])
def test_bad_requests_fail_before_anything_is_written(ca: CertificateAuthority, request_: IssueRequest,
                                                       message: str) -> None:
    before = _tree(ca.root)
    with pytest.raises(Exception, match=message):
        ca.issue(request_)
    after = _tree(ca.root)
    assert after.keys() == before.keys()
    assert after == before


def test_a_corrupt_intermediate_key_is_a_clear_error_and_writes_nothing(ca: CertificateAuthority) -> None:
    ca.layout.intermediate_key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    before = _tree(ca.root)
    with pytest.raises(PkiError, match="corrupt or not a PEM private key"):
        ca.issue(IssueRequest("web", ("app.test",)))
    assert _tree(ca.root) == before


def test_exporting_the_root_removes_it_and_issuing_still_works(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="Wrong passphrase"):
        ca.export_root(tmp_path / "usb" / "root.key.pem", b"wrong passphrase!", remove=True)
    assert ca.has_root_key()
    ca.export_root(tmp_path / "usb" / "root.key.pem", PASSPHRASE, remove=True)
    assert not ca.has_root_key()
    assert load_key(tmp_path / "usb" / "root.key.pem", PASSPHRASE)
    record = ca.issue(IssueRequest("after", ("app.test",)))
    assert record.serial
    assert pki_status(ca, timedelta(days=30))["root"]["key_on_host"] is False


def test_status_reports_certificates_close_to_expiry(ca: CertificateAuthority) -> None:
    ca.issue(IssueRequest("soon", ("app.test",), days=10))
    ca.issue(IssueRequest("gone", ("app.test",), days=1, not_before=datetime.now(UTC) - timedelta(days=3)))
    ca.issue(IssueRequest("fine", ("app.test",), days=90))
    report = pki_status(ca, timedelta(days=30))
    states = {c["name"]: c["state"] for c in report["certificates"]}
    assert states == {"soon": "expiring", "gone": "expired", "fine": "valid"}
    assert len(report["problems"]) == 2
    assert pki_status(ca, timedelta(days=5))["certificates"][2]["state"] == "valid"


def test_renew_due_renews_only_what_is_close_to_expiry(ca: CertificateAuthority) -> None:
    soon = ca.issue(IssueRequest("soon", ("app.test",), days=10))
    fine = ca.issue(IssueRequest("fine", ("app.test",), days=90))
    renewed = ca.renew_due(timedelta(days=30))
    assert [r.name for r in renewed] == ["soon"]
    assert ca.current("soon").serial != soon.serial  # type: ignore[union-attr]
    assert ca.current("fine") == fine


def test_only_two_versions_of_a_certificate_stay_on_disk(ca: CertificateAuthority) -> None:
    first = ca.issue(IssueRequest("web", ("app.test",)))
    renewals = [ca.renew("web") for _ in range(3)]
    kept = {p.name for p in (ca.root / "certs" / "web").iterdir()}
    assert kept == {renewals[-1].serial, renewals[-2].serial}
    assert first.serial not in kept
    assert ca.layout.live_cert("web").exists()


def test_every_wrong_passphrase_is_reported_as_one(tmp_path: Path) -> None:
    # About one wrong passphrase in 256 passes the padding check and fails later, while parsing:
    # the operator must still read "Wrong passphrase", not "corrupt".
    path = tmp_path / "root.key.pem"
    path.write_bytes(key_pem(generate_key("ecdsa-p256"), PASSPHRASE))
    for attempt in range(2000):
        with pytest.raises(PkiError, match="Wrong passphrase"):
            load_key(path, f"wrong-{attempt}".encode())
