"""The SSH user CA: certifies a client's SSH key for one workspace agent, for as long as its pairing lasts.

An agent's SSH server trusts this CA for the principal that is its own agent id, and nothing else
(docs/adr/0024). The key is an ed25519 key made on first use under the PKI directory (0600); only
its public half ever leaves this module, and it is never logged.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import asyncssh

from appliance.errors import OperatorError
from appliance.pki.files import write_atomically
from appliance.pki.layout import PkiLayout

# A client's clock may run a little behind ours: the certificate is valid from a moment ago.
BACKDATE = timedelta(minutes=5)
_KEY_TYPE = "ssh-ed25519"
_COMMENT = "appliance ssh user ca"


class InvalidSshKey(ValueError):
    """A string that is no OpenSSH public key line."""


class SshCaUnavailable(OperatorError):
    """The SSH user CA's key cannot be read or made by this process."""


def parse_public_key(line: str) -> asyncssh.SSHKey:
    """An OpenSSH public key line ("ssh-ed25519 AAAA... comment") as a key; InvalidSshKey otherwise."""
    if "\n" in line.strip() or not line.strip():
        raise InvalidSshKey("it must be one OpenSSH public key line")
    try:
        return asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError) as err:
        raise InvalidSshKey(f"it is not an OpenSSH public key ({err})") from err


def public_key_line(key: asyncssh.SSHKey) -> str:
    """The key as one normalised OpenSSH line, without the trailing newline."""
    return key.export_public_key("openssh").decode().strip()


@dataclass(frozen=True)
class SshUserCa:
    key: asyncssh.SSHKey

    @property
    def public_line(self) -> str:
        """What an agent writes after `cert-authority,principals="<agent id>" `."""
        return public_key_line(self.key)

    def certify(self, client_key: asyncssh.SSHKey, *, principal: str, key_id: str, now: datetime,
                valid_before: datetime) -> str:
        """An OpenSSH user certificate for client_key, valid for `principal` only, until valid_before."""
        cert = self.key.generate_user_certificate(client_key, key_id, principals=[principal],
                                                  valid_after=now - BACKDATE, valid_before=valid_before)
        return cert.export_certificate("openssh").decode().strip()


def _create_once(path: Path, owner: tuple[int, int] | None) -> None:
    """Write a new key unless one exists; two processes racing keep whichever linked first."""
    key = asyncssh.generate_private_key(_KEY_TYPE, comment=_COMMENT)
    # Unique per process AND thread: two first requests in one server must not share a temp file.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    write_atomically(temp, key.export_private_key("openssh"), mode=0o600, owner=owner)
    try:
        os.link(temp, path)  # fails if another process made the key meanwhile: theirs wins
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)


def ensure_ssh_user_ca(pki_dir: Path, owner: tuple[int, int] | None = None) -> SshUserCa:
    """The site's SSH user CA, made if missing (owned by `owner` when run as root for a service user)."""
    path = PkiLayout(pki_dir).ssh_user_ca_key
    try:
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if owner is not None:
                os.chown(path.parent, *owner)
            _create_once(path, owner)
        return SshUserCa(asyncssh.import_private_key(path.read_bytes()))
    except PermissionError as err:
        raise SshCaUnavailable(f"Cannot read or create the SSH user CA key {path}: {err.strerror}.",
                               "Create it as root for the service user: "
                               "'appliance pki ssh-user-ca --owner appliance'.") from err


@cache
def ssh_user_ca(pki_dir: Path) -> SshUserCa:
    """The site's SSH user CA, made on first use; loaded once per process."""
    return ensure_ssh_user_ca(pki_dir)
