"""Registry tokens: signed ES256 by a key whose certificate chains to the internal CA, with the spec's claims."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import jwt
import pytest
from cryptography import x509

from appliance.auth.rbac import Subject
from appliance.pki.ca import CertificateAuthority
from appliance.registry.scopes import Access
from appliance.registry.tokens import (
    ISSUER,
    SERVICE,
    RegistryUnavailable,
    challenge,
    ensure_signing_certificate,
    issue_token,
    load_signer,
)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    authority = CertificateAuthority(tmp_path / "pki")
    authority.init(b"a passphrase for the root key")
    return authority


def test_a_token_carries_the_claims_and_a_chain_to_the_root(ca: CertificateAuthority) -> None:
    assert ensure_signing_certificate(ca) and not ensure_signing_certificate(ca)
    now = datetime.now(UTC)
    issued = issue_token(load_signer(ca), Subject.of(uuid4(), "ada", []),
                         [Access("repository", "team/app", ("pull",))], now)
    header = jwt.get_unverified_header(issued.token)
    leaf, intermediate = (x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"])
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(ca.root_certificate())
    claims = jwt.decode(issued.token, leaf.public_key(), algorithms=["ES256"], audience=SERVICE, issuer=ISSUER)  # type: ignore[arg-type]
    assert header["alg"] == "ES256"
    assert claims["sub"] == "ada" and claims["jti"]
    assert claims["nbf"] == claims["iat"] <= now.timestamp() < claims["exp"] == claims["iat"] + issued.expires_in
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]


def test_two_tokens_never_share_an_id(ca: CertificateAuthority) -> None:
    ensure_signing_certificate(ca)
    signer, who = load_signer(ca), Subject.of(uuid4(), "ada", [])
    ids = {jwt.decode(issue_token(signer, who, [], datetime.now(UTC)).token,
                      options={"verify_signature": False})["jti"] for _ in range(3)}
    assert len(ids) == 3


def test_without_a_signing_certificate_the_error_says_how_to_get_one(ca: CertificateAuthority) -> None:
    with pytest.raises(RegistryUnavailable) as caught:
        load_signer(ca)
    assert "appliance pki issue registry-token" in caught.value.detail


def test_the_challenge_names_the_realm_and_the_service() -> None:
    assert challenge("https://appliance.test/") == (
        'Bearer realm="https://appliance.test/api/v2/registry/token",service="appliance-registry"')
