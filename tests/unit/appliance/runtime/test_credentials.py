"""A build's runtime credential: accepted only when signed by the CA's token key, for the runtime, in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.pki.ca import CertificateAuthority, IssueRequest
from appliance.registry.tokens import ensure_signing_certificate, load_signer
from appliance.runtime.credentials import BuildCredential, CredentialRefused, issue, load_roots, verify

BUILD = BuildCredential("4c1e7c4e-0000-4000-8000-000000000001", "owner-1", "build-1")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    authority = CertificateAuthority(tmp_path / "pki")
    authority.init(b"a passphrase for the root key")
    ensure_signing_certificate(authority)
    return authority


def _roots(ca: CertificateAuthority) -> list:  # type: ignore[type-arg]
    return load_roots(ca.layout.root_cert.read_bytes())


def test_a_credential_names_its_build_and_is_accepted_with_the_root(ca: CertificateAuthority) -> None:
    signer = load_signer(ca)
    now = datetime.now(UTC)
    token = issue(signer.key, signer.chain, BUILD, now, timedelta(minutes=30))
    assert verify(token, _roots(ca), now + timedelta(minutes=29)) == BUILD


def test_an_expired_credential_is_refused(ca: CertificateAuthority) -> None:
    signer = load_signer(ca)
    now = datetime.now(UTC)
    token = issue(signer.key, signer.chain, BUILD, now, timedelta(minutes=1))
    with pytest.raises(CredentialRefused, match="expired"):
        verify(token, _roots(ca), now + timedelta(minutes=5))


def test_another_cas_credential_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    other = CertificateAuthority(tmp_path / "other")
    other.init(b"another passphrase for the root")
    ensure_signing_certificate(other)
    signer = load_signer(other)
    token = issue(signer.key, signer.chain, BUILD, datetime.now(UTC), timedelta(minutes=5))
    with pytest.raises(CredentialRefused, match="CA"):
        verify(token, _roots(ca), datetime.now(UTC))


def test_a_key_the_ca_certified_for_something_else_cannot_sign_credentials(ca: CertificateAuthority) -> None:
    ca.issue(IssueRequest("web", dns_names=("web",)))
    key = ec.generate_private_key(ec.SECP256R1())
    web_chain = load_signer(ca).chain[1:]  # the intermediate, without the token certificate
    with pytest.raises(CredentialRefused):
        verify(issue(key, web_chain, BUILD, datetime.now(UTC), timedelta(minutes=5)), _roots(ca), datetime.now(UTC))


def test_garbage_is_refused_with_a_reason(ca: CertificateAuthority) -> None:
    with pytest.raises(CredentialRefused, match="not a JWT"):
        verify("not-a-token", _roots(ca), datetime.now(UTC))
