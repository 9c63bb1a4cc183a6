"""The agent's configuration from its environment: every missing or wrong variable named (agent/settings.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.agent.backoff import Backoff
from appliance.agent.settings import AgentSettings
from appliance.errors import OperatorError

GOOD = {"APPLIANCE_AGENT_URL": "https://appliance.example:8443/", "APPLIANCE_AGENT_TOKEN": "t0ken"}


def test_the_url_loses_its_slash_and_the_relay_is_under_it() -> None:
    settings = AgentSettings.from_env(GOOD)
    assert settings.url == "https://appliance.example:8443"
    assert settings.relay_url == "https://appliance.example:8443/derp"
    assert settings.ca_file is None


@pytest.mark.parametrize(("env", "named"), [
    ({"APPLIANCE_AGENT_TOKEN": "t"}, "APPLIANCE_AGENT_URL is not set"),
    ({**GOOD, "APPLIANCE_AGENT_URL": "ftp://x"}, "APPLIANCE_AGENT_URL is not an http(s) URL"),
    ({"APPLIANCE_AGENT_URL": "http://x"}, "APPLIANCE_AGENT_TOKEN is not set"),
    ({**GOOD, "SSL_CERT_FILE": "/nonexistent/ca.pem"}, "SSL_CERT_FILE names /nonexistent/ca.pem"),
], ids=["no url", "a url that is not http", "no token", "a CA file that is not there"])
def test_a_bad_environment_names_the_variable_and_what_to_do(env: dict[str, str], named: str) -> None:
    with pytest.raises(OperatorError) as raised:
        AgentSettings.from_env(env)
    assert named in raised.value.message and raised.value.hint


def test_the_ca_file_is_trusted_for_the_relay(tmp_path: Path) -> None:
    from appliance.pki.ca import CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki")
    ca.init(b"a passphrase for the root key")
    settings = AgentSettings.from_env({**GOOD, "SSL_CERT_FILE": str(ca.layout.trust_bundle)})
    context = settings.ssl_context()
    assert context is not None and context.cert_store_stats()["x509_ca"] >= 1


def test_backoff_doubles_to_its_cap_with_jitter_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(first=1.0, cap=30.0)
    delays = [backoff.next_delay() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30.0, 2.0 ** attempt)
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0
