"""Bootstrapping trust in an appliance's internal CA from a fingerprint compared out of band."""

from __future__ import annotations

import warnings

import requests
from cryptography import x509
from urllib3.exceptions import InsecureRequestWarning

from appliance.errors import OperatorError
from appliance.pki.certs import fingerprint
from appliance.pki.layout import TRUST_BUNDLE_URL_PATH


def _normalised(value: str) -> str:
    return value.replace(":", "").replace(" ", "").upper()


def fetch_pinned_bundle(url: str, expected_fingerprint: str) -> bytes:
    """Fetch the CA bundle and accept it only if its root's SHA-256 fingerprint is the expected one.

    The download itself is unverified (there is nothing to trust yet); the fingerprint, which the
    operator read from the appliance host or its console, is what makes the result trustworthy.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        try:
            response = requests.get(url.rstrip("/") + TRUST_BUNDLE_URL_PATH, timeout=30,
                                    verify=False)  # noqa: S501 -- trust comes from the fingerprint check below
        except requests.RequestException as err:
            raise OperatorError(f"Cannot fetch the CA bundle from {url}.", "Check the URL and the network.") from err
    if response.status_code != 200:
        raise OperatorError(f"{url} did not serve a CA bundle (HTTP {response.status_code}).",
                            "Get the bundle from the operator instead and pass --ca-file.")
    try:
        certificates = x509.load_pem_x509_certificates(response.content)
    except ValueError as err:
        raise OperatorError(f"{url} served something that is not a PEM CA bundle.",
                            "Do not trust this server.") from err
    roots = [c for c in certificates if c.issuer == c.subject]
    if len(roots) != 1:
        raise OperatorError(f"The CA bundle from {url} has {len(roots)} root certificates, expected 1.",
                            "Do not trust this server.")
    actual = fingerprint(roots[0])
    if _normalised(actual) != _normalised(expected_fingerprint):
        raise OperatorError(
            f"The CA served by {url} has root fingerprint {actual}, not the one you gave.",
            "Do not log in: this may not be your appliance. Re-read the fingerprint on the appliance host "
            "('appliance pki trust-bundle').")
    for cert in certificates:
        if cert is not roots[0]:
            cert.verify_directly_issued_by(roots[0])
    return response.content
