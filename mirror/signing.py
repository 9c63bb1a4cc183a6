"""The mirror signing key: made on first use, it signs each provider version's SHA256SUMS.

Terraform checks that detached signature for every provider installed through the registry
protocol. RSA is used because every Terraform release verifies it. With SOURCE_DATE_EPOCH set,
signatures are made at that time, and RSA PKCS#1 v1.5 signatures are deterministic, so a
rebuild from the same inputs gives the same bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gnupg

from mirror.errors import MirrorError

KEY_NAME = "Appliance provider registry"


@dataclass(frozen=True)
class SigningKey:
    home: Path
    fingerprint: str
    created: int = 0  # seconds since the epoch; a signature cannot be older than its key

    @property
    def key_id(self) -> str:
        return self.fingerprint[-16:]

    def public_armor(self) -> str:
        with _gpg(self.home) as gpg:
            return str(gpg.export_keys(self.fingerprint, armor=True))

    def sign(self, data: bytes) -> bytes:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        moment = max(int(epoch), self.created) if epoch and epoch.isdigit() else None
        extra = ["--faked-system-time", f"{_frozen(moment)}!"] if moment else None
        with _gpg(self.home) as gpg:
            result = gpg.sign(data, keyid=self.fingerprint, detach=True, binary=True, extra_args=extra)
        if not result.data:
            raise MirrorError(f"Could not sign with the mirror key in {self.home}: {result.status}.",
                              "Check that gpg works and the signing home is readable.")
        return bytes(result.data)


def _frozen(moment: int) -> int:
    """`moment`, once the real clock has left that second.

    gpg ignores --faked-system-time when it equals the current second and runs on the real clock,
    which can tick on before the signature is stamped: a key made and used within one second (a
    fresh key, a test) then gave two different signatures of the same bytes.
    """
    while int(time.time()) == moment:
        time.sleep(0.05)
    return moment


@contextmanager
def _gpg(home: Path) -> Iterator[gnupg.GPG]:
    """gpg on `home`; the agent it starts is stopped after, so no daemon outlives the command or server."""
    try:
        yield gnupg.GPG(gnupghome=str(home))
    finally:
        gpgconf = shutil.which("gpgconf")
        if gpgconf:
            subprocess.run([gpgconf, "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True,
                           timeout=30, check=False)


def signing_key(home: Path) -> SigningKey:
    """The key in `home`, generated there (RSA 3072, no passphrase, private folder) on first use."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _gpg(home) as gpg:
        existing = gpg.list_keys(secret=True)
        if existing:
            return SigningKey(home, existing[0]["fingerprint"], int(existing[0]["date"]))
        made = gpg.gen_key(gpg.gen_key_input(key_type="RSA", key_length=3072, key_usage="sign", name_real=KEY_NAME,
                                             name_email="registry@appliance.invalid", expire_date=0,
                                             no_protection=True))
    if not made.fingerprint:
        raise MirrorError(f"Could not generate the mirror signing key in {home}.", "Check that gpg 2.2+ is installed.")
    return signing_key(home)
