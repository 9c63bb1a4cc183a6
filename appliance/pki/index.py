"""The record of every certificate the CA issued, kept in index.json and replaced atomically."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from appliance.pki.files import write_atomically
from appliance.pki.keys import PkiError

INDEX_FORMAT = 1


@dataclass(frozen=True)
class CertRecord:
    serial: str
    name: str
    common_name: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    fingerprint: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    is_client: bool = False
    status: str = "valid"  # valid | superseded | revoked
    revoked_at: datetime | None = None
    reason: str | None = None

    def state(self, now: datetime, warn_within: timedelta) -> str:
        """What an operator needs to know: revoked, superseded, expired, expiring or valid."""
        if self.status != "valid":
            return self.status
        if self.not_after <= now:
            return "expired"
        if self.not_after - now <= warn_within:
            return "expiring"
        return "valid"

    def covers(self, dns: tuple[str, ...], ips: tuple[str, ...]) -> bool:
        """True when the certificate names every one of these hosts (IPs compared in canonical form)."""
        have_ips = {str(ipaddress.ip_address(i)) for i in self.ip_addresses}
        return set(dns) <= set(self.dns_names) and {str(ipaddress.ip_address(i)) for i in ips} <= have_ips

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days

    def revoked(self, at: datetime, reason: str) -> CertRecord:
        return replace(self, status="revoked", revoked_at=at, reason=reason)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        for key in ("not_before", "not_after", "issued_at", "revoked_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["dns_names"], data["ip_addresses"] = list(self.dns_names), list(self.ip_addresses)
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> CertRecord:
        values = dict(data)
        for key in ("not_before", "not_after", "issued_at", "revoked_at"):
            values[key] = datetime.fromisoformat(str(values[key])) if values.get(key) else None
        values["dns_names"] = tuple(values.get("dns_names") or ())  # type: ignore[arg-type]
        values["ip_addresses"] = tuple(values.get("ip_addresses") or ())  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class Index:
    records: list[CertRecord] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Index:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except ValueError as err:
            raise PkiError(f"The CA index {path} is corrupt ({err}).", "Restore it from a backup.") from err
        if data.get("format") != INDEX_FORMAT:
            raise PkiError(f"The CA index {path} has format {data.get('format')!r}, expected {INDEX_FORMAT}.",
                           "Use the appliance release that wrote it.")
        return cls([CertRecord.from_json(r) for r in data["certificates"]])

    def save(self, path: Path) -> None:
        body = {"format": INDEX_FORMAT, "certificates": [r.to_json() for r in self.records]}
        write_atomically(path, json.dumps(body, indent=2).encode() + b"\n", mode=0o644)

    def by_serial(self, serial: str) -> CertRecord | None:
        wanted = serial.lower().replace(":", "").lstrip("0")
        return next((r for r in self.records if r.serial.lstrip("0") == wanted), None)

    def current(self, name: str) -> CertRecord | None:
        """The certificate now in use under a name (the newest one that is not superseded)."""
        matches = [r for r in self.records if r.name == name and r.status != "superseded"]
        return max(matches, key=lambda r: r.issued_at) if matches else None

    def replace_record(self, new: CertRecord) -> None:
        self.records = [new if r.serial == new.serial else r for r in self.records]
