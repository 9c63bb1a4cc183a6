"""Which templates use which images: recorded at import, joined with what the registry holds for listing."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from appliance.db.database import Connection
from appliance.errors import OperatorError
from appliance.registry.catalog import Catalog, TagInfo
from appliance.registry.references import parse_reference
from appliance.sdk.images import ImageListResponse, ImageRepository, ImageTag


def record(conn: Connection, version_id: UUID, images: Iterable[tuple[str, str]]) -> None:
    """Store (resource address, image) pairs an import found; a re-run replaces them."""
    conn.execute("DELETE FROM template_version_images WHERE template_version_id = %s", (version_id,))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO template_version_images (template_version_id, address, image) "
                        "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                        [(version_id, address, image) for address, image in images])


def usage(conn: Connection) -> dict[str, list[str]]:
    """image reference -> names of live templates with a non-archived version naming it."""
    rows = conn.execute(
        "SELECT DISTINCT i.image, t.name FROM template_version_images i "
        "JOIN template_versions v ON v.id = i.template_version_id "
        "JOIN templates t ON t.id = v.template_id "
        "WHERE t.deleted_at IS NULL AND NOT v.archived ORDER BY t.name").fetchall()
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["image"], []).append(row["name"])
    return found


def _users(info: TagInfo, used: dict[str, list[str]], internal_hosts: frozenset[str]) -> list[str]:
    names: set[str] = set()
    for image, templates in used.items():
        ref = parse_reference(image)
        if ref.host in internal_hosts and ref.repository == info.repository and (
                ref.tag == info.tag if ref.digest is None else ref.digest == info.digest):
            names.update(templates)
    return sorted(names)


def listing(catalog: Catalog, registry_host: str, internal_hosts: frozenset[str],
            used: dict[str, list[str]]) -> ImageListResponse:
    """Everything the registry holds, each tag with the templates naming it; unreachable says why."""
    try:
        infos = catalog.everything()
    except OperatorError as err:
        return ImageListResponse(registry=registry_host, reachable=False, problem=err.message, hint=err.hint,
                                 repositories=[])
    repositories: dict[str, list[ImageTag]] = {}
    for info in infos:
        repositories.setdefault(info.repository, []).append(ImageTag(
            tag=info.tag, reference=f"{registry_host}/{info.repository}:{info.tag}", digest=info.digest,
            media_type=info.media_type, size=info.size, templates=_users(info, used, internal_hosts)))
    return ImageListResponse(registry=registry_host, reachable=True, repositories=[
        ImageRepository(name=name, tags=tags) for name, tags in repositories.items()])
