"""Registry bearer tokens per the Docker token spec: a JWT signed ES256 by a key the internal CA certified.

The registry trusts the CA's root (its `rootcertbundle`) and finds the signing certificate and the
intermediate in the token's `x5c` header, so renewing the signing certificate needs no registry
restart. Tokens live minutes: clients ask for a new one whenever the registry challenges them.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.auth.rbac import Subject
from appliance.errors import Conflict, RequestError
from appliance.pki.ca import CertificateAuthority, IssueRequest
from appliance.pki.keys import load_key
from appliance.registry.scopes import Access

SIGNING_CERT_NAME = "registry-token"  # the CA's live/registry-token: key and certificate that sign tokens
ISSUER = "appliance"                  # the `iss` the registry's `auth.token.issuer` expects
SERVICE = "appliance-registry"        # the `aud`, and the `service` the registry names in its challenge
TOKEN_PATH = "/api/v2/registry/token"  # noqa: S105 -- a URL path, not a secret
TOKEN_LIFETIME = timedelta(minutes=5)
ALGORITHM = "ES256"                   # the CA issues P-256 leaf keys


class RegistryUnavailable(RequestError):
    status = 503


@dataclass(frozen=True)
class Signer:
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]  # the signing certificate, then the intermediate that issued it


@dataclass(frozen=True)
class IssuedToken:
    token: str
    issued_at: datetime
    expires_in: int
    access: tuple[Access, ...]


def token_url(access_url: str) -> str:
    """The realm: where clients (and the registry's challenge) send people for a token."""
    return access_url.rstrip("/") + TOKEN_PATH


def challenge(access_url: str) -> str:
    """The WWW-Authenticate value that tells a client where to get a token for this registry."""
    return f'Bearer realm="{token_url(access_url)}",service="{SERVICE}"'


def ensure_signing_certificate(ca: CertificateAuthority) -> bool:
    """Issue the signing certificate when missing or revoked; True when issued. renew_due renews it."""
    current = ca.current(SIGNING_CERT_NAME)
    if current is not None and current.status != "revoked":
        return False
    try:
        ca.issue(IssueRequest(SIGNING_CERT_NAME, dns_names=(SIGNING_CERT_NAME,)))
    except Conflict:
        return False  # another process issued it first
    return True


def load_signer(ca: CertificateAuthority) -> Signer:
    layout = ca.layout
    try:
        chain = x509.load_pem_x509_certificates(layout.live_fullchain(SIGNING_CERT_NAME).read_bytes())
        key = load_key(layout.live_key(SIGNING_CERT_NAME))
    except (OSError, ValueError) as err:
        raise RegistryUnavailable(
            "The registry token signing key is missing or unreadable.",
            f"Restart 'appliance server', or run 'appliance pki issue {SIGNING_CERT_NAME} "
            f"--dns {SIGNING_CERT_NAME}'.") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise RegistryUnavailable(f"The registry token signing key is not a P-256 key, as {ALGORITHM} needs.",
                                  f"Reissue it: 'appliance pki renew {SIGNING_CERT_NAME}'.")
    return Signer(key, tuple(chain))


def _x5c(chain: tuple[x509.Certificate, ...]) -> list[str]:
    """RFC 7515's x5c: standard base64 of each certificate's DER, signing certificate first."""
    return [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode() for cert in chain]


def issue_token(signer: Signer, subject: Subject, access: list[Access], now: datetime) -> IssuedToken:
    """Sign a token for `subject` holding exactly `access` (already granted, see scopes.grant)."""
    return sign_token(signer, subject.username, access, now)


def sign_token(signer: Signer, sub: str, access: list[Access], now: datetime,
               lifetime_delta: timedelta = TOKEN_LIFETIME) -> IssuedToken:
    """Sign a token for `sub` holding `access` as given: callers decide what is granted.

    Local tools on the appliance host (image import, listing) sign their own, with the key file as the
    credential, and a lifetime long enough for one copy, since skopeo cannot come back for another.
    """
    issued = now.replace(microsecond=0)
    lifetime = int(lifetime_delta.total_seconds())
    claims = {
        "iss": ISSUER, "sub": sub, "aud": SERVICE, "jti": secrets.token_urlsafe(16),
        "iat": int(issued.timestamp()), "nbf": int(issued.timestamp()), "exp": int(issued.timestamp()) + lifetime,
        "access": [entry.claim() for entry in access],
    }
    token = jwt.encode(claims, signer.key, algorithm=ALGORITHM, headers={"x5c": _x5c(signer.chain)})
    return IssuedToken(token, issued, lifetime, tuple(access))
