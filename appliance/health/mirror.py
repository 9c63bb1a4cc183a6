"""mirror: is every provider an active template version requires in the provider mirror (EMIR01)?"""

from __future__ import annotations

import asyncio
import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from appliance.db.database import Connection
from appliance.health.context import HealthContext, finding, section, skipped
from appliance.provider import HOSTNAME
from appliance.sdk.health import HealthSection, Severity
from mirror.coverage import coverage
from mirror.errors import MirrorError

PLATFORM = "linux_amd64"  # the platform the provisioner runs terraform on


async def check(ctx: HealthContext) -> HealthSection:
    if not ctx.has_database:
        return skipped()
    versions = await ctx.read(_active_sources)
    return await asyncio.to_thread(_check, ctx, versions)


def _active_sources(conn: Connection) -> list[tuple[str, bytes]]:
    rows = conn.execute(
        "SELECT t.name, f.data FROM templates t JOIN template_versions v ON v.id = t.active_version_id "
        "JOIN files f ON f.hash = v.file_hash WHERE t.deleted_at IS NULL ORDER BY t.name").fetchall()
    return [(r["name"], bytes(r["data"])) for r in rows]


def _check(ctx: HealthContext, versions: list[tuple[str, bytes]]) -> HealthSection:
    tree = ctx.config.mirror_dir
    details: dict[str, Any] = {"mirror": str(tree), "templates": [name for name, _ in versions]}
    if not versions:
        return section(**details)
    with tempfile.TemporaryDirectory(prefix="appliance-health-") as scratch:
        folders = {name: _unpack_tf(data, Path(scratch) / str(i)) for i, (name, data) in enumerate(versions)}
        try:
            found = coverage(tree, list(folders.values()), appliance_host=HOSTNAME, platform=PLATFORM)
        except MirrorError as err:
            return section([finding("EMIR01", Severity.ERROR, f"The mirror at {tree} cannot be checked: "
                                    f"{err.message} {err.hint}")], **details)
        by_folder = {folder: name for name, folder in folders.items()}
    missing = sorted({(by_folder[f.requirement.template.parent], f.requirement.source, f.requirement.constraint)
                      for f in found if not f.is_covered})
    details["required"] = sorted({f.requirement.source for f in found})
    return section([finding("EMIR01", Severity.ERROR, f"Template {name} needs provider {source} "
                            f"{constraint or '(any version)'}, which the mirror lacks: its builds fail. Upgrade to a "
                            "bundle whose mirror has it, or change the template's required_providers.")
                    for name, source, constraint in missing], **details)


def _unpack_tf(archive: bytes, folder: Path) -> Path:
    """The template's top-level *.tf files: all that required_providers can be declared in."""
    folder.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".tf") and "/" not in member.name.strip("./"):
                source = tar.extractfile(member)
                if source is not None:
                    (folder / Path(member.name).name).write_bytes(source.read())
    return folder
