"""Certificate and CRL builders: pure functions over keys, names and times (no files)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.errors import InvalidInput
from appliance.pki.keys import PrivateKey

_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")  # fullmatch, as every rule here
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
BACKDATE = timedelta(minutes=5)  # tolerate clients whose clocks run a little behind
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(f"Invalid certificate name {name!r}: use 1-63 lowercase letters, digits, "
                           "'.', '_' or '-' (it becomes a folder name, so no '/').", field="name")
    return name


def parse_dns_name(value: str) -> str:
    name = value.strip().lower().rstrip(".")
    labels = name.split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    if not name or len(name) > 253 or not labels or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(f"Invalid DNS name {value!r}: expected a host name such as appliance.example.org.",
                           field="dns")
    return name


def parse_ip(value: str) -> IpAddress:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError as err:
        raise InvalidInput(f"Invalid IP address {value!r}: {err}.", field="ip") from err


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str = "Appliance") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def build_root(key: PrivateKey, *, common_name: str, now: datetime, days: int) -> x509.Certificate:
    subject = _name(common_name)
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _hash_for(key))
    )


def build_intermediate(key: PrivateKey, *, root_cert: x509.Certificate, root_key: PrivateKey,
                       common_name: str, now: datetime, days: int) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + timedelta(days=days), root_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, _hash_for(root_key))
    )


@dataclass(frozen=True)
class LeafRequest:
    """What a leaf certificate says: who it is for and when it is valid."""

    common_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[IpAddress, ...] = ()
    not_before: datetime | None = None
    not_after: datetime | None = None
    is_client: bool = False
    crl_urls: tuple[str, ...] = field(default=())


def _leaf_usage(public_key: CertificatePublicKeyTypes) -> x509.KeyUsage:
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def build_leaf(public_key: CertificatePublicKeyTypes, request: LeafRequest, *, issuer_cert: x509.Certificate,
               issuer_key: PrivateKey, serial: int) -> x509.Certificate:
    if not (request.dns_names or request.ip_addresses):
        raise InvalidInput("A certificate needs at least one --dns name or --ip address.", field="dns")
    if request.not_before is None or request.not_after is None or request.not_after <= request.not_before:
        raise InvalidInput("A certificate's validity must end after it starts.", field="days")
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in request.dns_names]
    sans += [x509.IPAddress(ip) for ip in request.ip_addresses]
    purpose = ExtendedKeyUsageOID.CLIENT_AUTH if request.is_client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(request.common_name)).issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(request.not_before)
        .not_valid_after(min(request.not_after, issuer_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if request.crl_urls:
        points = [x509.DistributionPoint(full_name=[x509.UniformResourceIdentifier(u)], relative_name=None,
                                         reasons=None, crl_issuer=None) for u in request.crl_urls]
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    return builder.sign(issuer_key, _hash_for(issuer_key))


REVOCATION_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
}


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: datetime
    reason: str


def build_crl(revocations: list[Revocation], *, issuer_cert: x509.Certificate, issuer_key: PrivateKey,
              now: datetime, next_update: timedelta) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + next_update)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    for item in revocations:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(item.serial)
            .revocation_date(item.revoked_at)
            .add_extension(x509.CRLReason(REVOCATION_REASONS[item.reason]), critical=False)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer_key, _hash_for(issuer_key))
