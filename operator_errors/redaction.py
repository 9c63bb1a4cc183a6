"""How a secret is hidden, in logs, job logs and support bundles: by the value, by the key, and in URLs.

A leaf module (standard library only) so that the appliance, its daemons and the installer share one
rule (docs/adr/0044-support-bundle.md): whatever one side redacts, the other cannot leak.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
# Shorter values would hide ordinary words ("true", a port): no secret the appliance makes is this short.
MIN_SECRET_LENGTH = 8
# A key holding any of these holds a secret (appliance.toml's provisioner_psk and postgres_url included).
SECRET_MARKERS = ("password", "passwd", "secret", "token", "passphrase", "cookie", "authorization", "psk",
                  "credential", "private_key", "postgres_url", "database_url", "conninfo", "dsn")
# scheme://user:PASSWORD@host: the password of any URL, known to us or not.
_URL_PASSWORD = re.compile(r"(?P<head>(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^\s:/@\"']*:)"
                           r"(?P<password>[^\s@/\"']+)(?=@)", re.I)
# An HTTP credential as a header or a curl line shows it: Authorization: Bearer TOKEN, Basic BASE64.
_AUTH_SCHEME = re.compile(r"(?P<head>\b(?:Bearer|Basic)\s+)(?P<credential>[A-Za-z0-9._~+/=-]{8,})", re.I)
# key = value / key: value / "key": "value" lines of config files and environments, the key a secret's.
_SECRET_ASSIGNMENT = re.compile(
    # A key starts where a word does: searching from inside a long token (base64) would be quadratic.
    r"(?P<head>(?<![A-Za-z0-9_.-])[\"']?(?P<key>[A-Za-z0-9_.-]+)[\"']?\s*[:=]\s*)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,}\n]+)")


@functools.lru_cache(maxsize=1024)  # field names repeat on every log line; the scan showed in profiles
def is_secret_key(name: str) -> bool:
    """Whether a field, config key or environment variable of this name holds a secret."""
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def usable(secrets: Iterable[str]) -> list[str]:
    """The values worth hiding, longest first, so a secret that contains another is hidden whole."""
    return sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by REDACTED."""
    for secret in usable(secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_json(value: Any, secrets: list[str]) -> Any:
    """Every string inside a JSON value (a plan, a parameter list) redacted."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_json(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact_json(v, secrets) for k, v in value.items()}
    return value


def encodings(secret: str) -> list[str]:
    """The forms a secret takes when written down: as is, URL-encoded, base64 and JSON-escaped."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
             base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
             base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return [form for form in forms if len(form) >= MIN_SECRET_LENGTH]


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """Everything a support bundle hides in a text: known secrets in any form, URL passwords, secret keys' values."""
    text = redact(text, [form for secret in secrets for form in encodings(secret)])
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    text = _AUTH_SCHEME.sub(lambda m: m["head"] + REDACTED, text)
    return _hide_assignments(text)


def _hide_assignments(text: str) -> str:
    """Every secret key's value replaced; another key's value is searched too (a script holding `psk=...`)."""
    parts, pos = [], 0
    while match := _SECRET_ASSIGNMENT.search(text, pos):
        if is_secret_key(match["key"]) and REDACTED not in match["value"]:
            parts.append(f'{text[pos:match.start("value")]}"{REDACTED}"')
            pos = match.end("value")
        else:
            parts.append(text[pos:match.end("head")])
            pos = match.end("head")
    return "".join(parts) + text[pos:]


def redact_mapping(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-like value with every secret key's value replaced, and known secrets hidden in the rest."""
    known = list(secrets)
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(str(k)) and v not in (None, "") else redact_mapping(v, known))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_mapping(v, known) for v in value]
    if isinstance(value, str):
        return redact_text(value, known)
    return value
