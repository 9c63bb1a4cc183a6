"""The internal CA on disk: init, issue, renew, revoke, export the root, report status.

Every change holds an exclusive flock on .lock, so concurrent `pki issue` calls in different
processes are serialised and never reuse a serial; every file is replaced atomically.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.config import ServerConfig
from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.pki import certs
from appliance.pki.files import switch_symlink, write_atomically
from appliance.pki.index import CertRecord, Index
from appliance.pki.keys import PkiError, generate_key, key_pem, load_key
from appliance.pki.layout import PkiLayout, crl_url

CRL_LIFETIME = timedelta(days=7)
KEPT_VERSIONS = 2  # the live certificate and the one it replaced


@dataclass(frozen=True)
class CaSettings:
    key_type: str = "ecdsa-p384"
    root_days: int = 3650
    intermediate_days: int = 730
    common_name: str = "Appliance Root CA"


@dataclass(frozen=True)
class IssueRequest:
    name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    days: int = 90
    key_type: str = "ecdsa-p256"
    is_client: bool = False
    not_before: datetime | None = None  # for certificates whose window starts in the past (tests, clock skew)


@dataclass
class CertificateAuthority:
    root: Path
    crl_urls: tuple[str, ...] = ()
    owner: tuple[int, int] | None = None  # who owns issued keys (the service user when run as root)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @classmethod
    def for_site(cls, config: ServerConfig, owner: tuple[int, int] | None = None) -> CertificateAuthority:
        """The CA in config.pki_dir, stamping the access URL's CRL location into what it issues."""
        return cls(config.pki_dir, crl_urls=(crl_url(config.access_url),), owner=owner)

    @property
    def layout(self) -> PkiLayout:
        return PkiLayout(self.root)

    def is_initialised(self) -> bool:
        return self.layout.intermediate_cert.exists()

    def has_root_key(self) -> bool:
        return self.layout.root_key.exists()

    @contextmanager
    def _locked(self) -> Iterator[Index]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        with self.layout.lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield Index.load(self.layout.index)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _require_initialised(self) -> None:
        if not self.is_initialised():
            raise PkiError(f"No CA in {self.root}.", "Create it with 'appliance pki init'.")

    # -- creation ---------------------------------------------------------------------------

    def init(self, passphrase: bytes, settings: CaSettings = CaSettings(), *, store_passphrase: bool = False) -> None:
        """Create the root (key encrypted with passphrase) and the intermediate that issues."""
        if len(passphrase) < 12:
            raise PkiError("The root key passphrase is too short: use at least 12 characters.",
                           "A long random phrase kept offline is best.")
        with self._locked() as index:
            if self.is_initialised() or self.layout.root_cert.exists():
                raise PkiError(f"A CA already exists in {self.root}.",
                               "Use it as it is; to start over, move that folder aside first.")
            now = self.clock()
            root_key = generate_key(settings.key_type)
            root_cert = certs.build_root(root_key, common_name=settings.common_name, now=now, days=settings.root_days)
            intermediate_key = generate_key(settings.key_type)
            intermediate = certs.build_intermediate(
                intermediate_key, root_cert=root_cert, root_key=root_key,
                common_name=settings.common_name.replace("Root", "Intermediate") if "Root" in settings.common_name
                else f"{settings.common_name} Intermediate",
                now=now, days=settings.intermediate_days)
            write_atomically(self.layout.root_key, key_pem(root_key, passphrase), mode=0o600)
            if store_passphrase:
                write_atomically(self.layout.root_passphrase, passphrase + b"\n", mode=0o600)
            write_atomically(self.layout.intermediate_key, key_pem(intermediate_key), mode=0o600, owner=self.owner)
            write_atomically(self.layout.root_cert, certs.cert_pem(root_cert))
            write_atomically(self.layout.trust_bundle, certs.cert_pem(root_cert) + certs.cert_pem(intermediate))
            # Written last: its presence is what marks the CA as initialised.
            write_atomically(self.layout.intermediate_cert, certs.cert_pem(intermediate))
            self._write_crl(index)

    # -- reading ----------------------------------------------------------------------------

    def root_certificate(self) -> x509.Certificate:
        self._require_initialised()
        return x509.load_pem_x509_certificate(self.layout.root_cert.read_bytes())

    def intermediate_certificate(self) -> x509.Certificate:
        self._require_initialised()
        return x509.load_pem_x509_certificate(self.layout.intermediate_cert.read_bytes())

    def trust_bundle_pem(self) -> bytes:
        self._require_initialised()
        return self.layout.trust_bundle.read_bytes()

    def root_fingerprint(self) -> str:
        return certs.fingerprint(self.root_certificate())

    def records(self) -> list[CertRecord]:
        return Index.load(self.layout.index).records

    def current(self, name: str) -> CertRecord | None:
        return Index.load(self.layout.index).current(name)

    def crl_pem(self) -> bytes:
        self._require_initialised()
        return self.layout.crl.read_bytes()

    # -- issuing ----------------------------------------------------------------------------

    def issue(self, request: IssueRequest) -> CertRecord:
        self._require_initialised()
        certs.validate_name(request.name)
        with self._locked() as index:
            existing = index.current(request.name)
            if existing is not None and existing.status == "valid":
                raise Conflict(f"Certificate {request.name!r} already exists (serial {existing.serial}, "
                               f"expires {existing.not_after:%Y-%m-%d}).",
                               f"Use 'appliance pki renew {request.name}' to replace it.", field="name")
            return self._issue_locked(index, request)

    def renew(self, name: str, *, days: int | None = None, dns_names: tuple[str, ...] | None = None,
              ip_addresses: tuple[str, ...] | None = None) -> CertRecord:
        """Reissue a certificate with a new key (same names unless given); the old one is superseded."""
        self._require_initialised()
        with self._locked() as index:
            old = index.current(name)
            if old is None:
                raise NotFound(f"No certificate named {name!r}.", "See 'appliance pki list'.")
            if old.status == "revoked":
                raise Conflict(f"Certificate {name!r} (serial {old.serial}) was revoked on "
                               f"{old.revoked_at:%Y-%m-%d} ({old.reason}), so it cannot be renewed.",
                               f"Issue a new one with 'appliance pki issue {name} ...'.")
            lifetime = days or max(1, round((old.not_after - old.not_before).total_seconds() / 86400))
            request = IssueRequest(name, dns_names if dns_names is not None else old.dns_names,
                                   ip_addresses if ip_addresses is not None else old.ip_addresses,
                                   days=lifetime, is_client=old.is_client)
            return self._issue_locked(index, request, replacing=old)

    def renew_due(self, within: timedelta) -> list[CertRecord]:
        """Renew every live certificate that expires within the window; refresh the CRL."""
        self._require_initialised()
        now = self.clock()
        due = [r.name for r in self.records()
               if r.status == "valid" and r.not_after - now <= within and self.current(r.name) == r]
        renewed = [self.renew(name) for name in due]
        self.refresh_crl()
        return renewed

    def _key_owner(self, name: str) -> tuple[int, int] | None:
        key = self.layout.live_key(name)
        if not key.exists():
            return None
        info = key.stat()
        return info.st_uid, info.st_gid

    def _issue_locked(self, index: Index, request: IssueRequest, replacing: CertRecord | None = None) -> CertRecord:
        dns = tuple(dict.fromkeys(certs.parse_dns_name(d) for d in request.dns_names))
        ips = tuple(dict.fromkeys(certs.parse_ip(i) for i in request.ip_addresses))
        if not (dns or ips):
            raise InvalidInput("A certificate needs at least one --dns name or --ip address.", field="dns")
        if request.days < 1 or request.days > 3650:
            raise PkiError(f"Invalid validity of {request.days} days.", "Use 1 to 3650 days.")
        issuer_cert = self.intermediate_certificate()
        issuer_key = load_key(self.layout.intermediate_key)
        serial = self._unused_serial(index)
        start = request.not_before or (self.clock() - certs.BACKDATE)
        key = generate_key(request.key_type)
        leaf = certs.build_leaf(key.public_key(), certs.LeafRequest(
            common_name=dns[0] if dns else str(ips[0]), dns_names=dns, ip_addresses=ips, not_before=start,
            not_after=start + timedelta(days=request.days), is_client=request.is_client, crl_urls=self.crl_urls),
            issuer_cert=issuer_cert, issuer_key=issuer_key, serial=serial)
        serial_hex = f"{serial:x}"
        folder = self.layout.version_dir(request.name, serial_hex)
        # A renewal (the root-run timer names no owner) keeps the key with the service that reads it.
        owner = self.owner or (self._key_owner(request.name) if replacing else None)
        write_atomically(folder / "key.pem", key_pem(key), mode=0o600, owner=owner)
        write_atomically(folder / "cert.pem", certs.cert_pem(leaf))
        write_atomically(folder / "fullchain.pem", certs.cert_pem(leaf) + certs.cert_pem(issuer_cert))
        record = CertRecord(serial=serial_hex, name=request.name, common_name=dns[0] if dns else str(ips[0]),
                            not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
                            issued_at=self.clock(), fingerprint=certs.fingerprint(leaf), dns_names=dns,
                            ip_addresses=tuple(str(ip) for ip in ips), is_client=request.is_client)
        if replacing is not None:
            index.replace_record(replace(replacing, status="superseded"))
        index.records.append(record)
        index.save(self.layout.index)
        switch_symlink(self.layout.live(request.name), folder)
        self._prune_versions(index, request.name)
        return record

    def _unused_serial(self, index: Index) -> int:
        while True:
            serial = x509.random_serial_number()
            if index.by_serial(f"{serial:x}") is None:
                return serial

    def _prune_versions(self, index: Index, name: str) -> None:
        """Keep the newest versions' files (the live one and the one it replaced); drop older keys."""
        newest = sorted((r for r in index.records if r.name == name), key=lambda r: r.issued_at, reverse=True)
        keep = {r.serial for r in newest[:KEPT_VERSIONS]}
        for folder in (self.layout.root / "certs" / name).iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder)

    # -- revocation -------------------------------------------------------------------------

    def revoke(self, serial: str, reason: str) -> CertRecord:
        self._require_initialised()
        if reason not in certs.REVOCATION_REASONS:
            raise PkiError(f"Unknown revocation reason {reason!r}.",
                           f"Use one of: {', '.join(certs.REVOCATION_REASONS)}.")
        with self._locked() as index:
            record = index.by_serial(serial)
            if record is None:
                raise NotFound(f"No certificate with serial {serial!r}.", "See 'appliance pki list'.")
            if record.status == "revoked":
                raise Conflict(f"Certificate {record.name!r} (serial {record.serial}) is already revoked.")
            revoked = record.revoked(self.clock(), reason)
            index.replace_record(revoked)
            index.save(self.layout.index)
            self._write_crl(index)
            return revoked

    def refresh_crl(self) -> None:
        self._require_initialised()
        with self._locked() as index:
            self._write_crl(index)

    def _write_crl(self, index: Index) -> None:
        revocations = [certs.Revocation(int(r.serial, 16), r.revoked_at, r.reason or "unspecified")
                       for r in index.records if r.status == "revoked" and r.revoked_at]
        crl = certs.build_crl(revocations, issuer_cert=self.intermediate_certificate(),
                              issuer_key=load_key(self.layout.intermediate_key), now=self.clock(),
                              next_update=CRL_LIFETIME)
        write_atomically(self.layout.crl, crl.public_bytes(serialization.Encoding.PEM))

    def crl_next_update(self) -> datetime | None:
        if not self.layout.crl.exists():
            return None
        return x509.load_pem_x509_crl(self.layout.crl.read_bytes()).next_update_utc

    # -- the root key -----------------------------------------------------------------------

    def export_root(self, destination: Path, passphrase: bytes, *, remove: bool) -> None:
        """Copy the encrypted root key out; with remove, delete it (and any stored passphrase) here."""
        self._require_initialised()
        with self._locked():
            key = load_key(self.layout.root_key, passphrase)  # proves the passphrase before anything moves
            if key.public_key() != self.root_certificate().public_key():
                raise PkiError(f"{self.layout.root_key} does not match the root certificate.",
                               "Restore the right key from a backup before exporting.")
            write_atomically(destination, self.layout.root_key.read_bytes(), mode=0o600)
            if load_key(destination, passphrase).public_key() != key.public_key():
                raise PkiError(f"The copy at {destination} does not read back.", "Check that medium and retry.")
            if remove:
                _shred(self.layout.root_key)
                if self.layout.root_passphrase.exists():
                    _shred(self.layout.root_passphrase)


def _shred(path: Path) -> None:
    """Overwrite, then unlink. On journaling or flash storage this is best effort only."""
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
