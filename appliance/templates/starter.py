"""The starter templates: pushed by the appliance itself the first time an embedded server starts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from appliance.audit.record import record
from appliance.db.database import Connection
from appliance.templates import service as templates
from appliance.templates.archive import source_archive

log = logging.getLogger(__name__)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"


@dataclass(frozen=True)
class Starter:
    name: str  # also its folder under examples/templates
    display_name: str
    description: str


STARTERS = (
    Starter("podman-debian", "Podman (Debian 12)",
            "A Debian 12 container from the internal registry, with a persistent home volume at /home/dev."),
    Starter("minimal", "Minimal",
            "Starter template: an agent, an app, parameters and metadata; needs no infrastructure."),
)
# The template the console suggests first when a developer creates a workspace.
SUGGESTED = STARTERS[0].name


def starter_sources() -> list[tuple[Starter, Path]]:
    """Each starter found in examples/templates of a source checkout (an installed appliance has none)."""
    return [(starter, EXAMPLES / starter.name) for starter in STARTERS
            if (EXAMPLES / starter.name / "main.tf").is_file()]


def push_starters(conn: Connection, sources: list[tuple[Starter, Path]], timeout: timedelta) -> list[str]:
    """Push every starter if no template was ever created; the names queued for import."""
    if conn.execute("SELECT 1 FROM templates LIMIT 1").fetchone() is not None:
        return []
    for starter, source in sources:
        _push(conn, starter, source, timeout)
    return [starter.name for starter, _ in sources]


def _push(conn: Connection, starter: Starter, source: Path, timeout: timedelta) -> None:
    template_id = templates.insert_template(
        conn, name=starter.name, display_name=starter.display_name, allowed_roles=["member"], created_by=None,
        description=starter.description)
    file_hash = templates.insert_file(conn, source_archive(source), None)
    template = templates.find_template(conn, str(template_id))
    version_id, _ = templates.insert_version(conn, template, file_hash=file_hash, message="Starter template",
                                             activate=True, timeout=timeout, created_by=None)
    record(conn, actor=None, actor_name="appliance", action="create", resource_type="template",
           resource_id=template_id, target=starter.name, status=201)
    log.info("starter_template_pushed", extra={"template": starter.name, "version_id": str(version_id)})
