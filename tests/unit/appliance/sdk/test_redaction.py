"""The one redaction rule the daemon and the control plane share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sdk.redaction import REDACTED, redact, redact_json

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "secrets", "expected"), [
    ("psk=abcdefgh1234", ["abcdefgh1234"], f"psk={REDACTED}"),
    ("twice abcdefgh abcdefgh", ["abcdefgh"], f"twice {REDACTED} {REDACTED}"),
    ("port 5432 true", ["5432", "true"], "port 5432 true"),
    ("url postgresql://u:secretpass@h/db", ["secretpass", "postgresql://u:secretpass@h/db"], f"url {REDACTED}"),
    ("nothing here", [], "nothing here"),
], ids=["a secret is replaced", "every occurrence", "short values are left alone",
        "a secret inside a longer one is hidden with it", "no secrets, no change"])
def test_redact(text: str, secrets: list[str], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_redact_json_hides_secrets_in_every_string_and_keeps_the_shape() -> None:
    plan = {"name": "cpu", "default": "abcdefgh1", "options": [{"value": "xabcdefgh1y"}], "count": 3, "on": True}
    assert redact_json(plan, ["abcdefgh1"]) == {"name": "cpu", "default": REDACTED,
                                               "options": [{"value": f"x{REDACTED}y"}], "count": 3, "on": True}


@given(st.text(min_size=8, alphabet=st.characters(codec="utf-8")), st.text(), st.text())
def test_a_secret_never_survives_redaction(secret: str, before: str, after: str) -> None:
    assert secret not in redact(before + secret + after, [secret])
