"""A workspace build's credential for the runtime service: an ES256 JWT the control plane signs.

The provisioner hands terraform one per build (never per import). It names the workspace, its
owner and the build, and lives as long as the job may run; the runtime service lets it touch
only that workspace's containers and volumes. It is signed, like registry tokens (docs/adr/0017),
by the key the internal CA certified for token signing, with the chain in `x5c`, so the runtime
service needs the CA root and nothing else: no database, no shared secret.
"""

from __future__ import annotations

import base64
import itertools
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.sdk.runtime import CREDENTIAL_AUDIENCE

ISSUER = "appliance"
ALGORITHM = "ES256"
SIGNING_NAME = "registry-token"  # the CA's token-signing certificate: its DNS name, as registry tokens use
_LEEWAY = timedelta(seconds=30)  # clock skew between the control plane and an external runtime unit


class CredentialRefused(ValueError):
    """The credential is missing, forged, expired or not meant for the runtime service; says which."""


@dataclass(frozen=True)
class BuildCredential:
    workspace_id: str
    owner_id: str
    build_id: str


def issue(key: ec.EllipticCurvePrivateKey, chain: tuple[x509.Certificate, ...], build: BuildCredential,
          now: datetime, lifetime: timedelta) -> str:
    """Sign a credential for `build`, valid from `now` for `lifetime` (the job's timeout)."""
    issued = int(now.timestamp())
    claims = {"iss": ISSUER, "aud": CREDENTIAL_AUDIENCE, "sub": build.workspace_id, "owner": build.owner_id,
              "build": build.build_id, "iat": issued, "nbf": issued, "exp": issued + int(lifetime.total_seconds()),
              "jti": secrets.token_urlsafe(16)}
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode() for cert in chain]
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"x5c": x5c})


def verify(token: str, roots: list[x509.Certificate], now: datetime) -> BuildCredential:
    """The build a credential speaks for, once its chain leads to one of `roots` and its claims hold."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as err:
        raise CredentialRefused(f"not a JWT ({err})") from err
    leaf_key = _trusted_leaf(header.get("x5c"), roots, now).public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey):
        raise CredentialRefused("its signing certificate holds no P-256 key")
    try:
        # Times are checked below against `now`, which PyJWT cannot be given.
        claims = jwt.decode(token, leaf_key, algorithms=[ALGORITHM], audience=CREDENTIAL_AUDIENCE,
                            issuer=ISSUER, options={"require": ["exp", "nbf", "sub", "aud", "iss"],
                                                    "verify_exp": False, "verify_nbf": False, "verify_iat": False})
    except jwt.InvalidTokenError as err:
        raise CredentialRefused(str(err)) from err
    moment = now.timestamp()
    if not isinstance(claims["exp"], int) or moment > claims["exp"] + _LEEWAY.total_seconds():
        raise CredentialRefused("the credential has expired (the build ran past its job timeout)")
    if not isinstance(claims["nbf"], int) or moment < claims["nbf"] - _LEEWAY.total_seconds():
        raise CredentialRefused("the credential is not valid yet (check the clocks)")
    owner, build = claims.get("owner"), claims.get("build")
    if not isinstance(owner, str) or not isinstance(build, str) or not isinstance(claims["sub"], str):
        raise CredentialRefused("the credential lacks its owner or build")
    return BuildCredential(claims["sub"], owner, build)


def _trusted_leaf(x5c: object, roots: list[x509.Certificate], now: datetime) -> x509.Certificate:
    if not isinstance(x5c, list) or not 1 <= len(x5c) <= 4 or not all(isinstance(item, str) for item in x5c):
        raise CredentialRefused("the credential carries no certificate chain (x5c)")
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(item, validate=True)) for item in x5c]
    except ValueError as err:
        raise CredentialRefused(f"its certificate chain does not parse ({err})") from err
    for cert in chain:
        if not cert.not_valid_before_utc - _LEEWAY <= now <= cert.not_valid_after_utc + _LEEWAY:
            raise CredentialRefused(f"certificate {cert.subject.rfc4514_string()} is not valid now")
    for child, parent in itertools.pairwise(chain):
        _check_issued_by(child, parent)
    top = chain[-1]
    if not any(_issued_by(top, root) for root in roots):
        raise CredentialRefused("its certificate chain does not lead to the appliance's CA")
    if SIGNING_NAME not in _dns_names(chain[0]):
        raise CredentialRefused(f"it is not signed by the appliance's token key ({SIGNING_NAME})")
    return chain[0]


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _check_issued_by(child: x509.Certificate, parent: x509.Certificate) -> None:
    if not _issued_by(child, parent):
        raise CredentialRefused(f"certificate {child.subject.rfc4514_string()} is not issued by the next in x5c")


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(x509.DNSName)


def load_roots(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)
