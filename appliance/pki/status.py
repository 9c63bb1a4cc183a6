"""The CA's health as one report: for `pki status`, the API and the console's admin page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cryptography import x509

from appliance.pki import certs
from appliance.pki.ca import CertificateAuthority


def _cert_summary(cert: x509.Certificate) -> dict[str, Any]:
    return {"subject": cert.subject.rfc4514_string(), "not_after": cert.not_valid_after_utc.isoformat(),
            "fingerprint": certs.fingerprint(cert)}


def pki_status(ca: CertificateAuthority, warn_within: timedelta) -> dict[str, Any]:
    """Root, intermediate, CRL and every certificate, plus the problems an operator must act on."""
    now = ca.clock()
    root, intermediate = ca.root_certificate(), ca.intermediate_certificate()
    crl_next = ca.crl_next_update()
    problems: list[str] = []
    for label, cert in (("root CA", root), ("intermediate CA", intermediate)):
        if cert.not_valid_after_utc - now <= warn_within:
            problems.append(f"The {label} expires on {cert.not_valid_after_utc:%Y-%m-%d}.")
    if crl_next is None or crl_next <= now:
        problems.append("The CRL is missing or out of date; run 'appliance pki renew --due 30d' to refresh it.")
    rows = []
    for record in sorted(ca.records(), key=lambda r: (r.name, r.issued_at)):
        state = record.state(now, warn_within)
        if state in ("expiring", "expired"):
            problems.append(f"Certificate {record.name} (serial {record.serial}) {state}: "
                            f"not after {record.not_after:%Y-%m-%d}. Run 'appliance pki renew {record.name}'.")
        rows.append({**record.to_json(), "state": state, "days_left": record.days_left(now)})
    return {
        "root": {**_cert_summary(root), "key_on_host": ca.has_root_key(),
                 "passphrase_on_host": ca.layout.root_passphrase.exists()},
        "intermediate": _cert_summary(intermediate),
        "crl_next_update": crl_next.isoformat() if crl_next else None,
        "certificates": rows,
        "problems": problems,
    }
