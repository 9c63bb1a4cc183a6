"""Certificate builders: CA and leaf extensions, chains, CRLs, and input validation."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.errors import InvalidInput
from appliance.pki import certs
from appliance.pki.keys import generate_key

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def chain() -> tuple[x509.Certificate, x509.Certificate, object]:
    root_key, inter_key = generate_key("ecdsa-p384"), generate_key("ecdsa-p384")
    root = certs.build_root(root_key, common_name="Test Root CA", now=NOW, days=3650)
    inter = certs.build_intermediate(inter_key, root_cert=root, root_key=root_key, common_name="Test Intermediate",
                                     now=NOW, days=730)
    return root, inter, inter_key


def _leaf(chain: tuple[x509.Certificate, x509.Certificate, object], key_type: str = "ecdsa-p256",
          days: int = 90, **request: object) -> x509.Certificate:
    _, inter, inter_key = chain
    key = generate_key(key_type)
    values: dict[str, object] = {"common_name": "app.test", "dns_names": ("app.test",), "not_before": NOW,
                                 "not_after": NOW + timedelta(days=days), **request}
    return certs.build_leaf(key.public_key(), certs.LeafRequest(**values),  # type: ignore[arg-type]
                            issuer_cert=inter, issuer_key=inter_key, serial=12345)  # type: ignore[arg-type]


def test_root_and_intermediate_are_cas_with_the_right_path_lengths(chain: tuple) -> None:  # type: ignore[type-arg]
    root, inter, _ = chain
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    for cert in (root, inter):
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign and usage.crl_sign
    inter.verify_directly_issued_by(root)


def test_a_server_leaf_has_sans_usages_and_is_signed_by_the_intermediate(chain: tuple) -> None:  # type: ignore[type-arg]
    _, inter, _ = chain
    leaf = _leaf(chain, dns_names=("app.test", "alt.test"), ip_addresses=(ipaddress.ip_address("10.1.2.3"),),
                 crl_urls=("https://app.test/api/v2/pki/crl.pem",))
    leaf.verify_directly_issued_by(inter)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["app.test", "alt.test"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert not usage.value.key_encipherment  # ECDSA keys do not encipher
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == "https://app.test/api/v2/pki/crl.pem"


def test_rsa_leaves_allow_key_encipherment_and_client_leaves_say_client_auth(chain: tuple) -> None:  # type: ignore[type-arg]
    leaf = _leaf(chain, key_type="rsa-2048", is_client=True)
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey)
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_leaf_never_outlives_its_issuer(chain: tuple) -> None:  # type: ignore[type-arg]
    _, inter, _ = chain
    leaf = _leaf(chain, days=5000)
    assert leaf.not_valid_after_utc == inter.not_valid_after_utc


def test_a_leaf_needs_a_name(chain: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput, match="at least one --dns name or --ip"):
        _leaf(chain, dns_names=())


def test_the_crl_lists_revoked_serials_with_reasons(chain: tuple) -> None:  # type: ignore[type-arg]
    _, inter, inter_key = chain
    crl = certs.build_crl([certs.Revocation(12345, NOW, "key-compromise")], issuer_cert=inter,
                          issuer_key=inter_key, now=NOW, next_update=timedelta(days=7))  # type: ignore[arg-type]
    assert crl.is_signature_valid(inter.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(12345)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.next_update_utc == NOW + timedelta(days=7)


@pytest.mark.parametrize("name", ["a/b", "../etc", "..", "", "UPPER", "-lead", "x" * 64, "a\\b"])
def test_names_that_are_not_safe_folder_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="Invalid certificate name"):
        certs.validate_name(name)


@pytest.mark.parametrize("value", ["300.1.1.1", "10.0.0", "localhost", "::gg"])
def test_bad_ip_addresses_are_refused_naming_the_value(value: str) -> None:
    with pytest.raises(InvalidInput, match=f"Invalid IP address '{value}'"):
        certs.parse_ip(value)


@pytest.mark.parametrize(("value", "expected"), [("App.Example.org.", "app.example.org"),
                                               ("*.apps.test", "*.apps.test")])
def test_dns_names_are_normalised(value: str, expected: str) -> None:
    assert certs.parse_dns_name(value) == expected


@pytest.mark.parametrize("value", ["", "bad_name.test", "-x.test", "a..b", "x" * 64 + ".test", "http://x"])
def test_bad_dns_names_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="Invalid DNS name"):
        certs.parse_dns_name(value)
