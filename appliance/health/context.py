"""What every check is given (configuration, database, clock) and the helpers that shape a section."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from appliance.config import ServerConfig
from appliance.db.database import Connection, Database
from appliance.pki.ca import CertificateAuthority
from appliance.sdk.health import CODES, HealthFinding, HealthSection, Severity, worst

T = TypeVar("T")
DB_TIMEOUT = 3.0  # seconds a check waits for a pooled connection: a down database is EDB01, not a hang
SKIPPED = "skipped: the database cannot be reached (see the database section)"


@dataclass
class HealthContext:
    config: ServerConfig
    db: Database | None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Set by report.py once the database check ran: checks that read the database skip when it is down.
    database_up: bool = True

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        assert self.db is not None
        with self.db.reading(timeout=DB_TIMEOUT) as conn:
            yield conn

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work(conn)` on a database thread."""
        def run() -> T:
            with self.reading() as conn:
                return work(conn)

        return await asyncio.to_thread(run)

    @property
    def has_database(self) -> bool:
        return self.db is not None and self.database_up

    def ssl_context(self) -> ssl.SSLContext | None:
        """Trusts the site's CA (the access URL's certificate is the appliance's own) beside the system's."""
        if not self.config.access_url.startswith("https:"):
            return None
        context = ssl.create_default_context()
        try:
            ca = CertificateAuthority.for_site(self.config)
            if ca.is_initialised():
                context.load_verify_locations(cadata=ca.trust_bundle_pem().decode())
        except (OSError, ValueError):  # not readable by this user: the system's trust store may still do
            pass
        return context


def finding(code: str, severity: Severity, message: str) -> HealthFinding:
    assert code in CODES, f"{code} is not in appliance.sdk.health.CODES"
    return HealthFinding(code=code, severity=severity, message=message)


def section(findings: list[HealthFinding] | None = None, /, **details: Any) -> HealthSection:
    """A section whose severity is its worst finding not dismissed."""
    findings = findings or []
    severity = worst([f.severity for f in findings if not f.dismissed])
    errors = [f for f in findings if f.severity is Severity.ERROR and not f.dismissed]
    return HealthSection(severity=severity, healthy=severity is not Severity.ERROR,
                         dismissed=bool(findings) and all(f.dismissed for f in findings),
                         error=f"{errors[0].code}: {errors[0].message}" if errors else None,
                         findings=findings, details=details)


def skipped() -> HealthSection:
    """A section that needs the database while it is down: EDB01 already makes the report an error."""
    return section(skipped=SKIPPED)
