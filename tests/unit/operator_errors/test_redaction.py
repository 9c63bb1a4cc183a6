"""The one secret rule: known values in any written form, URL passwords, and whatever sits under a secret's key."""

from __future__ import annotations

import base64
import secrets
from urllib.parse import quote

import pytest

from operator_errors.redaction import REDACTED, encodings, is_secret_key, redact_mapping, redact_text

SECRET = secrets.token_urlsafe(24) + "/+="  # characters that change under URL and base64 encoding


@pytest.mark.parametrize("form", [SECRET, quote(SECRET, safe=""), base64.b64encode(SECRET.encode()).decode(),
                                  base64.urlsafe_b64encode(SECRET.encode()).decode()],
                         ids=["raw", "url-encoded", "base64", "urlsafe-base64"])
def test_a_known_secret_is_hidden_in_each_written_form(form: str) -> None:
    assert form in encodings(SECRET)
    assert form not in redact_text(f"before {form} after", [SECRET])


@pytest.mark.parametrize("text", [
    "postgresql://appliance:{s}@/appliance?host=/var/run/postgresql",
    "provisioner_psk = \"{s}\"",
    "APPLIANCE_PKI_PASSPHRASE={s}",
    "\"session_token\": \"{s}\"",
    "registry_password: {s}",
    "curl -H 'Authorization: Bearer {s}' https://appliance.test",
    "Cookie: appliance_session={s}",
    "startup_script = \"echo hello; echo --password={s}; echo done\"",
], ids=["database-url", "toml-key", "environment", "json-key", "yaml-key", "bearer", "cookie", "inside-a-value"])
def test_an_unknown_secret_is_hidden_by_where_it_stands(text: str) -> None:
    value = secrets.token_hex(16)
    redacted = redact_text(text.format(s=value), [])
    assert value not in redacted and REDACTED in redacted


def test_ordinary_settings_stay_readable() -> None:
    text = 'access_url = "https://appliance.test"\nlog_format = "json"\nregistry_address = "127.0.0.1:3002"\n'
    assert redact_text(text, []) == text


def test_a_mapping_loses_every_secret_keys_value_at_any_depth() -> None:
    value = {"postgres_url": "postgresql://a:b@h/d", "nested": [{"api_token": "t0ken-value", "name": "web"}],
             "note": f"the key is {SECRET}", "empty_password": ""}
    assert redact_mapping(value, [SECRET]) == {
        "postgres_url": REDACTED, "nested": [{"api_token": REDACTED, "name": "web"}],
        "note": f"the key is {REDACTED}", "empty_password": ""}


@pytest.mark.parametrize(("key", "secret"), [
    ("provisioner_psk", True), ("X-Session-Cookie", True), ("pki_passphrase_file", True), ("Authorization", True),
    ("registry_credentials", True), ("access_url", False), ("log_format", False), ("workspace_id", False),
], ids=lambda v: str(v))
def test_secret_keys_are_told_by_their_name(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret
