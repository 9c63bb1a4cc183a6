"""The internal CA against real TLS: openssl, requests, CRL checks, and a live HTTPS listener."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from requests.adapters import HTTPAdapter

from appliance.config import Address
from appliance.pki.ca import CertificateAuthority, IssueRequest
from appliance.server.tls import TlsListener
from tests.support.postgres import free_port

PASSPHRASE = b"correct horse battery staple"


def hello_app(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"hello over tls"]


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    authority = CertificateAuthority(tmp_path / "pki")
    authority.init(PASSPHRASE)
    return authority


def _serve(ca: CertificateAuthority, name: str) -> Iterator[str]:
    port = free_port()
    listener = TlsListener(Address("127.0.0.1", port), hello_app, ca.layout.live_fullchain(name),
                           ca.layout.live_key(name))
    listener.start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        listener.stop()


class CrlCheckingAdapter(HTTPAdapter):
    """requests with an SSL context that trusts only our CA and checks the leaf against our CRL."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.context = ssl.create_default_context(cafile=str(ca.layout.trust_bundle))
        self.context.load_verify_locations(cafile=str(ca.layout.crl))  # a PEM CRL loads like a CA file
        self.context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        super().__init__()

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["ssl_context"] = self.context
        super().init_poolmanager(*args, **kwargs)  # type: ignore[no-untyped-call]


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("key_type", "is_client"), [("ecdsa-p256", False), ("rsa-2048", False), ("ecdsa-p256", True)],
                         ids=["ecdsa server", "rsa server", "ecdsa client"])
def test_openssl_verifies_each_leaf_through_the_chain(ca: CertificateAuthority, key_type: str, is_client: bool) -> None:
    ca.issue(IssueRequest("leaf", ("app.test",), ("127.0.0.1",), key_type=key_type, is_client=is_client))
    verify = _openssl("verify", "-CAfile", str(ca.layout.root_cert), "-untrusted", str(ca.layout.intermediate_cert),
                      "-purpose", "sslclient" if is_client else "sslserver", str(ca.layout.live_cert("leaf")))
    assert verify.returncode == 0 and verify.stdout.strip().endswith(": OK"), verify.stdout + verify.stderr
    text = _openssl("x509", "-noout", "-text", "-in", str(ca.layout.live_cert("leaf"))).stdout
    assert "DNS:app.test, IP Address:127.0.0.1" in text
    assert "CA:FALSE" in text
    assert "Digital Signature" in text
    assert ("TLS Web Client Authentication" if is_client else "TLS Web Server Authentication") in text
    assert ("Key Encipherment" in text) == key_type.startswith("rsa")


def test_a_client_trusting_only_the_bundle_reaches_the_server(ca: CertificateAuthority) -> None:
    ca.issue(IssueRequest("web", ("localhost",), ("127.0.0.1",)))
    for url in _serve(ca, "web"):
        response = requests.get(url, verify=str(ca.layout.trust_bundle), timeout=10)
        assert response.text == "hello over tls"
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            requests.get(url, verify=True, timeout=10)  # the system's CAs do not know ours


def test_the_wrong_hostname_is_refused(ca: CertificateAuthority) -> None:
    ca.issue(IssueRequest("web", ("elsewhere.test",)))
    for url in _serve(ca, "web"):
        with pytest.raises(requests.exceptions.SSLError, match=r"IP address mismatch|doesn't match"):
            requests.get(url, verify=str(ca.layout.trust_bundle), timeout=10)


def test_an_expired_certificate_is_refused(ca: CertificateAuthority) -> None:
    ca.issue(IssueRequest("web", ("localhost",), ("127.0.0.1",), days=1,
                          not_before=datetime.now(UTC) - timedelta(days=10)))
    for url in _serve(ca, "web"):
        with pytest.raises(requests.exceptions.SSLError, match="certificate has expired"):
            requests.get(url, verify=str(ca.layout.trust_bundle), timeout=10)


def test_a_revoked_certificate_is_refused_by_a_client_checking_the_crl(ca: CertificateAuthority) -> None:
    record = ca.issue(IssueRequest("web", ("localhost",), ("127.0.0.1",)))
    for url in _serve(ca, "web"):
        session = requests.Session()
        session.mount("https://", CrlCheckingAdapter(ca))
        assert session.get(url, timeout=10).status_code == 200  # the CRL check itself passes before revocation
        ca.revoke(record.serial, "key-compromise")
        revoked = requests.Session()
        revoked.mount("https://", CrlCheckingAdapter(ca))
        with pytest.raises(requests.exceptions.SSLError, match="certificate revoked"):
            revoked.get(url, timeout=10)
    crl_file = ca.layout.crl
    verify = _openssl("verify", "-crl_check", "-CRLfile", str(crl_file), "-CAfile", str(ca.layout.trust_bundle),
                      str(ca.layout.live_cert("web")))
    assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr


def _served_serial(url: str, bundle: Path) -> int:
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(bundle))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_renewed_certificate_is_served_after_reload_without_a_restart(ca: CertificateAuthority) -> None:
    first = ca.issue(IssueRequest("web", ("localhost",), ("127.0.0.1",)))
    port = free_port()
    listener = TlsListener(Address("127.0.0.1", port), hello_app, ca.layout.live_fullchain("web"),
                           ca.layout.live_key("web"))
    listener.start()
    try:
        url = f"https://127.0.0.1:{port}"
        assert _served_serial(url, ca.layout.trust_bundle) == int(first.serial, 16)
        second = ca.renew("web")
        listener.reload_certificate()
        assert _served_serial(url, ca.layout.trust_bundle) == int(second.serial, 16)
    finally:
        listener.stop()
