"""On-disk layout of the internal CA, under DATA_DIR/pki (/var/lib/appliance/pki installed).

    root/ca.crt.pem              root certificate (public)
    root/ca.key.pem              root key, encrypted with the passphrase; removable
    root/passphrase              quickstart only: the generated passphrase (0600)
    intermediate/ca.crt.pem      intermediate certificate, signed by the root
    intermediate/ca.key.pem      intermediate key (0600): issues unattended, so not encrypted
    ca-bundle.pem                root + intermediate: what clients trust
    crl.pem                      revocation list signed by the intermediate
    index.json                   every issued certificate: serial, names, validity, status
    certs/NAME/SERIAL/           key.pem (0600), cert.pem, fullchain.pem (leaf + intermediate)
    live/NAME -> ../certs/NAME/SERIAL   switched atomically when a certificate is renewed
    .lock                        flock held by every change, so two processes never collide
    ssh/user_ca.key              the SSH user CA (OpenSSH ed25519 private key, 0600): certifies the
                                 keys clients use to reach workspace agents (docs/adr/0024)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CRL_URL_PATH = "/api/v2/pki/crl.pem"
TRUST_BUNDLE_URL_PATH = "/api/v2/pki/ca.pem"


def crl_url(access_url: str) -> str:
    """Where clients fetch the CRL; written into every leaf's CRL distribution point."""
    return access_url.rstrip("/") + CRL_URL_PATH


@dataclass(frozen=True)
class PkiLayout:
    root: Path

    @property
    def root_cert(self) -> Path:
        return self.root / "root" / "ca.crt.pem"

    @property
    def root_key(self) -> Path:
        return self.root / "root" / "ca.key.pem"

    @property
    def root_passphrase(self) -> Path:
        return self.root / "root" / "passphrase"

    @property
    def intermediate_cert(self) -> Path:
        return self.root / "intermediate" / "ca.crt.pem"

    @property
    def intermediate_key(self) -> Path:
        return self.root / "intermediate" / "ca.key.pem"

    @property
    def trust_bundle(self) -> Path:
        return self.root / "ca-bundle.pem"

    @property
    def crl(self) -> Path:
        return self.root / "crl.pem"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    @property
    def ssh_user_ca_key(self) -> Path:
        return self.root / "ssh" / "user_ca.key"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def version_dir(self, name: str, serial: str) -> Path:
        return self.root / "certs" / name / serial

    def live(self, name: str) -> Path:
        return self.root / "live" / name

    def live_cert(self, name: str) -> Path:
        return self.live(name) / "cert.pem"

    def live_key(self, name: str) -> Path:
        return self.live(name) / "key.pem"

    def live_fullchain(self, name: str) -> Path:
        return self.live(name) / "fullchain.pem"
