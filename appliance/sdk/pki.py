"""The internal CA's health on the wire: root, intermediate, CRL and every issued certificate."""

from __future__ import annotations

from pydantic import BaseModel

from appliance.sdk.base import Timestamp


class CaCertificateResponse(BaseModel):
    subject: str
    not_after: Timestamp
    fingerprint: str


class RootCaResponse(CaCertificateResponse):
    key_on_host: bool
    passphrase_on_host: bool


class IssuedCertificateResponse(BaseModel):
    serial: str
    name: str
    common_name: str
    dns_names: list[str]
    ip_addresses: list[str]
    not_before: Timestamp
    not_after: Timestamp
    issued_at: Timestamp
    fingerprint: str
    is_client: bool
    status: str
    state: str
    days_left: int
    revoked_at: Timestamp | None
    reason: str | None


class PkiStatusResponse(BaseModel):
    root: RootCaResponse
    intermediate: CaCertificateResponse
    crl_next_update: Timestamp | None
    certificates: list[IssuedCertificateResponse]
    problems: list[str]
