"""What the control plane hides in job logs: the site's secrets and the job's own, known to no daemon.

A daemon hides what its JobSpec names; an external one never learns the database password, the
CA's keys or the tokens terraform makes mid-apply. So every line is redacted again here, when it
is stored, with everything the appliance knows (docs/adr/0010-who-sees-logs.md).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from uuid import UUID

import psycopg
from psycopg.conninfo import conninfo_to_dict

from appliance.config import ServerConfig
from appliance.db.database import Connection
from appliance.pki.layout import PkiLayout
from appliance.pki.passphrase import ENV_VAR as PKI_PASSPHRASE_ENV
from appliance.provisioner import extract
from appliance.sdk.redaction import redact, usable

# (build id, row version) -> the secrets of that build's state; parsed once per state upload, not per line.
_STATE_SECRETS: dict[tuple[UUID, str], list[str]] = {}
_STATE_CACHE_SIZE = 256


def _file_lines(path: Path) -> list[str]:
    """A secret file's lines: a log shows a PEM key line by line, so each body line is a secret."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # absent (no CA yet) or unreadable by this process: nothing to hide from it
        return []
    return [line.strip() for line in text.splitlines() if not line.startswith("-----")]


@functools.lru_cache(maxsize=8)
def site_secrets(config: ServerConfig, conninfo: str) -> tuple[str, ...]:
    """The provisioner key, the database's connection string and password, the CA's passphrase and key."""
    found = [config.provisioner_psk, conninfo, config.postgres_url or "", os.environ.get(PKI_PASSPHRASE_ENV, "")]
    with suppress(psycopg.ProgrammingError):  # an unparsable conninfo fails at connect; here it has no password
        found.append(str(conninfo_to_dict(conninfo).get("password") or ""))
    layout = PkiLayout(config.pki_dir)
    found += _file_lines(layout.root_passphrase) + _file_lines(layout.intermediate_key)
    return tuple(usable(found))


def _state_secrets(conn: Connection, build_id: UUID, version: str) -> list[str]:
    key = (build_id, version)
    if key not in _STATE_SECRETS:
        row = conn.execute("SELECT state FROM workspace_builds WHERE id = %s", (build_id,)).fetchone()
        if len(_STATE_SECRETS) >= _STATE_CACHE_SIZE:
            _STATE_SECRETS.clear()
        _STATE_SECRETS[key] = extract.sensitive_values(bytes(row["state"])) if row and row["state"] else []
    return _STATE_SECRETS[key]


def job_secrets(conn: Connection, job_id: UUID) -> list[str]:
    """The workspace's agent tokens and sensitive values: in this build's state so far and the one before."""
    rows = conn.execute(
        "SELECT b.id, b.xmin::text AS version FROM workspace_builds b"
        " JOIN workspace_builds mine ON mine.workspace_id = b.workspace_id AND b.build_number <= mine.build_number"
        " WHERE mine.job_id = %s AND b.state IS NOT NULL ORDER BY b.build_number DESC LIMIT 2", (job_id,)).fetchall()
    return [s for row in rows for s in _state_secrets(conn, row["id"], row["version"])]


def redact_lines(conn: Connection, job_id: UUID, lines: Sequence[tuple[str, str, str]],
                 site: Iterable[str]) -> list[tuple[str, str, str]]:
    """(stage, level, output) lines with every secret the appliance knows hidden."""
    known = usable([*site, *job_secrets(conn, job_id)])
    return [(stage, level, redact(output, known)) for stage, level, output in lines]


def redact_text(conn: Connection, job_id: UUID, text: str, site: Iterable[str]) -> str:
    return redact(text, [*site, *job_secrets(conn, job_id)])


def scrub_stored(conn: Connection, job_id: UUID) -> None:
    """Hide, in lines already stored, secrets a state upload just revealed (a token printed before it arrived)."""
    secrets = usable(job_secrets(conn, job_id))
    if not secrets:
        return
    rows = conn.execute(
        "SELECT id, output FROM provisioner_job_logs WHERE job_id = %s"
        " AND EXISTS (SELECT 1 FROM unnest(%s::text[]) s WHERE strpos(output, s) > 0)", (job_id, secrets)).fetchall()
    for row in rows:
        conn.execute("UPDATE provisioner_job_logs SET output = %s WHERE id = %s", (redact(row["output"], secrets),
                                                                                  row["id"]))
