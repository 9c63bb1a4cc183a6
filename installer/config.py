"""The operator's install settings (`install --config FILE`), with defaults from the host."""

from __future__ import annotations

import ipaddress
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.errors import InstallError

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
KNOWN_KEYS = {"hostname", "https_port", "http_port", "extra_dns", "extra_ips", "pki_passphrase_file",
              "signature_threshold"}


@dataclass(frozen=True)
class InstallConfig:
    hostname: str
    https_port: int = 443
    http_port: int = 80
    extra_dns: tuple[str, ...] = ()
    extra_ips: tuple[str, ...] = ()
    pki_passphrase_file: Path | None = None
    signature_threshold: int = 1
    source: Path | None = field(default=None, compare=False)

    @property
    def access_url(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.hostname}{port}"


def _fail(source: Path | None, key: str, problem: str) -> InstallError:
    where = f"{source} key {key!r}" if source else f"setting {key!r}"
    return InstallError(f"Invalid {where}: {problem}.", "Fix the install config and run the installer again.")


def _port(value: Any, source: Path | None, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise _fail(source, key, f"expected a port from 1 to 65535, got {value!r}")
    return value


def default_hostname() -> str:
    return socket.getfqdn().lower().rstrip(".")


def load_install_config(path: Path | None) -> InstallConfig:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as err:
            raise InstallError(f"Install config {path} does not exist.", "Check the --config path.") from err
        except tomllib.TOMLDecodeError as err:
            raise InstallError(f"Install config {path} is not valid TOML: {err}.", "Fix the line it names.") from err
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise InstallError(f"Unknown key(s) {', '.join(unknown)} in {path}.",
                           f"Known: {', '.join(sorted(KNOWN_KEYS))}.")
    hostname = str(data.get("hostname") or default_hostname()).lower()
    if not _HOSTNAME.match(hostname):
        raise _fail(path, "hostname", f"{hostname!r} is not a host name")
    for value in data.get("extra_ips", []):
        try:
            ipaddress.ip_address(value)
        except ValueError as err:
            raise _fail(path, "extra_ips", f"{value!r} is not an IP address") from err
    threshold = data.get("signature_threshold", 1)
    if not isinstance(threshold, int) or threshold < 1:
        raise _fail(path, "signature_threshold", "must be 1 or more; signatures cannot be turned off")
    passphrase = data.get("pki_passphrase_file")
    return InstallConfig(hostname=hostname, https_port=_port(data.get("https_port", 443), path, "https_port"),
                         http_port=_port(data.get("http_port", 80), path, "http_port"),
                         extra_dns=tuple(data.get("extra_dns", [])), extra_ips=tuple(data.get("extra_ips", [])),
                         pki_passphrase_file=Path(passphrase) if passphrase else None,
                         signature_threshold=threshold, source=path)
