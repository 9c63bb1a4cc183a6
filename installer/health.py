"""After the playbook: are the services up, and does the console answer over HTTPS?"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from installer.paths import UNITS

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.+?)\s+-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class UnitState:
    unit: str
    state: str

    @property
    def is_active(self) -> bool:
        return self.state == "active"


def unit_states(units: tuple[str, ...] = UNITS) -> list[UnitState]:
    states = []
    for unit in units:
        result = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True, check=False)
        states.append(UnitState(unit, result.stdout.strip() or "unknown"))
    return states


def settled_unit_states(timeout: float = 60.0) -> list[UnitState]:
    """Unit states once nothing is starting or restarting any more (handlers may have just restarted them)."""
    deadline = time.monotonic() + timeout
    while True:
        states = unit_states()
        if all(s.is_active for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def root_fingerprint(bundle: Path) -> str:
    """SHA-256 fingerprint of the first certificate in a PEM bundle (the root), like `openssl x509 -fingerprint`."""
    match = _PEM.search(bundle.read_bytes())
    if match is None:
        return "unknown"
    return fingerprint_of(base64.b64decode(b"".join(match.group(1).split())))


def fingerprint_of(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def https_get(port: int, ca_bundle: Path, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One GET of https://127.0.0.1:port/path trusting only the CA bundle: (status, body); status 0 if it failed."""
    context = ssl.create_default_context(cafile=str(ca_bundle))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as err:
        return 0, str(err)
    finally:
        connection.close()


def https_healthz(port: int, ca_bundle: Path, attempts: int = 30) -> str | None:
    """None when https://127.0.0.1:port/healthz answers OK trusting only the CA bundle, else the last error."""
    error = "not tried"
    for _ in range(attempts):
        status, body = https_get(port, ca_bundle, "/healthz")
        if status == 200 and body == "OK":
            return None
        error = f"HTTP {status}: {body[:100]}" if status else body
        time.sleep(1)
    return error
