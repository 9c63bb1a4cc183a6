"""Downgrade authorizations: the release keys' signed permission to go back from one version to another.

A bundle older than the installed release is refused (anti-rollback) unless the operator also
passes an authorization naming exactly that installed -> bundle pair, unexpired, signed by the
release keys with the same threshold as bundles (docs/adr/0038). The file is one JSON object:

    {"format": "appliance-downgrade-authorization/1",
     "document": "<the signed JSON text: product, from_version, to_version, reason, issued_at, expires_at>",
     "signatures": "<ASCII-armored detached signatures over the document's exact bytes>"}

The document travels as a string, so the signed bytes are exactly the bytes checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bundles.errors import BundleError, BundleRejected
from bundles.layout import PRODUCT
from bundles.manifest import digest, parse_version
from bundles.signatures import Signer, check_signatures, join_signatures, sign_manifest, split_signatures

FORMAT = "appliance-downgrade-authorization/1"
MAX_BYTES = 1 << 20
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_FIELDS = ("product", "from_version", "to_version", "reason", "issued_at", "expires_at")
_WHAT = "the downgrade authorization"


@dataclass(frozen=True)
class DowngradeAuthorization:
    from_version: str
    to_version: str
    reason: str
    issued_at: datetime
    expires_at: datetime
    product: str = PRODUCT

    def document(self) -> bytes:
        body = {"product": self.product, "from_version": self.from_version, "to_version": self.to_version,
                "reason": self.reason, "issued_at": self.issued_at.strftime(_TIME),
                "expires_at": self.expires_at.strftime(_TIME)}
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class VerifiedDowngrade:
    authorization: DowngradeAuthorization
    signers: list[Signer]
    sha256: str   # of the authorization file as given

    def to_json(self) -> dict[str, Any]:
        auth = self.authorization
        return {"from_version": auth.from_version, "to_version": auth.to_version, "reason": auth.reason,
                "issued_at": auth.issued_at.strftime(_TIME), "expires_at": auth.expires_at.strftime(_TIME),
                "signers": [s.to_json() for s in self.signers], "sha256": self.sha256}


def _invalid(message: str) -> BundleRejected:
    return BundleRejected("downgrade-invalid", f"{_WHAT}: {message}",
                          "Pass the file 'appliance-bundle authorize-downgrade' wrote, unchanged.")


def _envelope(data: bytes) -> tuple[bytes, bytes]:
    if len(data) > MAX_BYTES:
        raise _invalid(f"is {len(data)} bytes, over the {MAX_BYTES} byte limit.")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise _invalid(f"is not JSON ({err}).") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise _invalid(f"format must be {FORMAT!r}.")
    document, signatures = raw.get("document"), raw.get("signatures")
    if not isinstance(document, str) or not isinstance(signatures, str):
        raise _invalid("document and signatures must be strings.")
    return document.encode(), signatures.encode()


def _time(raw: dict[str, Any], key: str) -> datetime:
    try:
        return datetime.strptime(str(raw[key]), _TIME).replace(tzinfo=UTC)
    except (KeyError, ValueError) as err:
        raise _invalid(f"{key} is missing or not a UTC time like 2026-01-31T12:00:00Z.") from err


def _parse_document(document: bytes) -> DowngradeAuthorization:
    try:
        raw = json.loads(document)
    except (ValueError, UnicodeDecodeError) as err:
        raise _invalid(f"its document is not JSON ({err}).") from err
    if not isinstance(raw, dict) or set(raw) != set(_FIELDS):
        raise _invalid(f"its document must have exactly {', '.join(_FIELDS)}.")
    for key in ("product", "from_version", "to_version", "reason"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise _invalid(f"{key} must be a non-empty string.")
    auth = DowngradeAuthorization(from_version=raw["from_version"], to_version=raw["to_version"],
                                  reason=raw["reason"], issued_at=_time(raw, "issued_at"),
                                  expires_at=_time(raw, "expires_at"), product=raw["product"])
    if auth.expires_at <= auth.issued_at:
        raise _invalid("expires_at must be after issued_at.")
    return auth


def check_authorization(data: bytes, *, keyring: bytes, threshold: int, installed: str, version: str,
                        now: datetime) -> VerifiedDowngrade:
    """The authorization for going from `installed` to `version`; BundleRejected (rule downgrade-*) otherwise."""
    document, signatures = _envelope(data)
    try:
        signers = check_signatures(document, signatures, keyring, threshold, what=_WHAT)
    except BundleRejected as err:
        raise BundleRejected(f"downgrade-{err.rule}", err.detail,
                             err.hint if err.rule == "expired-key" else
                             "Have the release key holders sign a new one: appliance-bundle authorize-downgrade "
                             f"--from {installed} --to {version} --reason TEXT --key FPR.") from err
    auth = _parse_document(document)
    if (auth.product, auth.from_version, auth.to_version) != (PRODUCT, installed, version):
        raise BundleRejected("downgrade-mismatch", f"{_WHAT} allows {auth.product} {auth.from_version} -> "
                             f"{auth.to_version}, not {installed} (installed) -> {version} (this bundle).",
                             "Use the authorization issued for exactly this pair, or have one signed: "
                             f"appliance-bundle authorize-downgrade --from {installed} --to {version} "
                             "--reason TEXT --key FPR.")
    if now >= auth.expires_at:
        raise BundleRejected("downgrade-expired", f"{_WHAT} for {installed} -> {version} expired on "
                             f"{auth.expires_at:%Y-%m-%d %H:%M} UTC.",
                             "Have the release key holders sign a new one (appliance-bundle authorize-downgrade).")
    return VerifiedDowngrade(auth, signers, digest(data))


# -- build side --------------------------------------------------------------------------------


def authorize(from_version: str, to_version: str, reason: str, *, valid_for: timedelta,
              now: datetime | None = None) -> DowngradeAuthorization:
    """An unsigned authorization, checked: a real downgrade between two SemVer versions, with a reason."""
    if parse_version(to_version, "--to") >= parse_version(from_version, "--from"):
        raise BundleError(f"--to {to_version} is not older than --from {from_version}: that is no downgrade.",
                          "Pass the installed version as --from and the older version to go back to as --to.")
    if not reason.strip():
        raise BundleError("--reason is empty.", "Say why the downgrade is needed; it is recorded on the host.")
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    return DowngradeAuthorization(from_version, to_version, reason.strip(), issued, issued + valid_for)


def write_signed(out: Path, document: bytes, fingerprints: tuple[str, ...], gnupghome: Path | None,
                 passphrase: str | None) -> int:
    """Write (or add signatures to) the authorization file OUT; the number of signatures it now carries."""
    blocks: list[bytes] = []
    if out.exists():
        existing, signatures = _envelope(out.read_bytes())
        if existing != document:
            raise BundleError(f"{out} already holds a different authorization.",
                              "Choose another --output, or countersign that one with "
                              "'appliance-bundle countersign-downgrade'.")
        blocks = split_signatures(signatures, _WHAT)
    blocks += [sign_manifest(document, fingerprint, gnupghome, passphrase) for fingerprint in fingerprints]
    body = {"format": FORMAT, "document": document.decode(),
            "signatures": join_signatures(blocks).decode()}
    out.write_text(json.dumps(body, indent=1) + "\n")
    return len(blocks)


def read_document(path: Path) -> bytes:
    """The signed document of an existing authorization file (for a second signer)."""
    try:
        return _envelope(path.read_bytes())[0]
    except OSError as err:
        raise BundleError(f"Cannot read {path}: {err.strerror}.", "Check the path.") from err
