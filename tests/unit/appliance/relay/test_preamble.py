"""The certificate line `appliance ssh --stdio` sends first: what the agent accepts, and why it refuses the rest."""

from __future__ import annotations

import pytest

from appliance.relay.preamble import CERT_PREFIX, PreambleError, cert_line, certified_key
from tests.support.ssh_session import SessionKeys

KEYS = SessionKeys()


def _line(**kwargs: object) -> bytes:
    return cert_line(KEYS.certificate(**kwargs).export_certificate().decode())  # type: ignore[arg-type]


def test_a_certificate_from_the_site_ca_for_this_agent_vouches_for_its_key() -> None:
    key = certified_key(_line(), KEYS.user_ca, KEYS.agent_id)
    assert key.public_data == KEYS.user.public_data


@pytest.mark.parametrize(("line", "reason"), [
    (b"hello\n", "neither SSH nor a certificate line"),
    (CERT_PREFIX + b"not-a-certificate\n", "not an OpenSSH certificate"),
    (_line(principal="agent-2"), "does not admit this agent"),
    (_line(signer=SessionKeys().ca), "not signed by the site's SSH user CA"),
    (_line()[:-1], "neither SSH nor a certificate line"),
], ids=["another first line", "garbage after the prefix", "a certificate for another agent",
        "a certificate from another CA", "a line without its end"])
def test_anything_else_is_refused_with_the_reason(line: bytes, reason: str) -> None:
    with pytest.raises(PreambleError, match=reason):
        certified_key(line, KEYS.user_ca, KEYS.agent_id)


def test_an_expired_certificate_is_refused() -> None:
    expired = KEYS.ca.generate_user_certificate(KEYS.user, "old", principals=[KEYS.agent_id],
                                                valid_after="-2h", valid_before="-1h")
    with pytest.raises(PreambleError, match="expired"):
        certified_key(cert_line(expired.export_certificate().decode()), KEYS.user_ca, KEYS.agent_id)
