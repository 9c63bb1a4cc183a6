"""What every job learns of the site (appliance/provisioner/coordinator.py JobSite), with and without a CA."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from appliance.pki.ca import CertificateAuthority
from appliance.provisioner.coordinator import JobSite
from appliance.registry.tokens import ensure_signing_certificate
from appliance.runtime.credentials import BuildCredential


def test_without_a_ca_builds_get_no_runtime_credential_and_the_script_trusts_an_empty_bundle() -> None:
    site = JobSite("http://127.0.0.1:3000/", "127.0.0.1:3002")
    assert site.runtime_credential(BuildCredential("w", "o", "b"), timedelta(minutes=5)) is None
    script = site.agent_script()
    assert "<<'APPLIANCE_CA_BUNDLE'\nAPPLIANCE_CA_BUNDLE\n" in script
    assert '--cacert "$CA_FILE"' in script and "${ACCESS_URL}bin/appliance-agent-linux-amd64" in script


def test_the_init_script_stops_on_sigterm_even_while_it_waits_to_retry() -> None:
    script = JobSite("http://127.0.0.1:3000/", "127.0.0.1:3002").agent_script()
    assert "trap 'exit 143' TERM INT" in script and 'sleep "$wait_for" & wait $!' in script


def test_a_ca_without_its_token_key_gives_no_credential_and_no_error(tmp_path: Path) -> None:
    """A site whose CA lacks the registry-token key (issued at server start) still runs builds."""
    ca = CertificateAuthority(tmp_path / "pki")
    ca.init(b"a passphrase for the root key")
    site = JobSite("http://127.0.0.1:3000/", "127.0.0.1:3002", ca)
    assert site.runtime_credential(BuildCredential("w", "o", "b"), timedelta(minutes=5)) is None
    ensure_signing_certificate(ca)
    assert site.runtime_credential(BuildCredential("w", "o", "b"), timedelta(minutes=5))
