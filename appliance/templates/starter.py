"""The starter template: pushed by the appliance itself the first time an embedded server starts."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from appliance.audit.record import record
from appliance.db.database import Connection
from appliance.templates import service as templates
from appliance.templates.archive import source_archive

log = logging.getLogger(__name__)
STARTER_NAME = "minimal"


def starter_source() -> Path | None:
    """examples/templates/minimal in a source checkout (an installed appliance has none)."""
    candidate = Path(__file__).resolve().parents[2] / "examples" / "templates" / STARTER_NAME
    return candidate if (candidate / "main.tf").is_file() else None


def push_starter(conn: Connection, source: Path, timeout: timedelta) -> bool:
    """Push the starter template if no template was ever created; True when it was queued for import."""
    if conn.execute("SELECT 1 FROM templates LIMIT 1").fetchone() is not None:
        return False
    template_id = templates.insert_template(
        conn, name=STARTER_NAME, display_name="Minimal", allowed_roles=["member"], created_by=None,
        description="Starter template: an agent, an app, parameters and metadata; needs no infrastructure.")
    file_hash = templates.insert_file(conn, source_archive(source), None)
    template = templates.find_template(conn, str(template_id))
    version_id, _ = templates.insert_version(conn, template, file_hash=file_hash, message="Starter template",
                                             activate=True, timeout=timeout, created_by=None)
    record(conn, actor=None, actor_name="appliance", action="create", resource_type="template",
           resource_id=template_id, target=STARTER_NAME, status=201)
    log.info("starter_template_pushed", extra={"template": STARTER_NAME, "version_id": str(version_id)})
    return True
