"""Which file answers which URL, and with what Content-Type (Terraform insists on application/json)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mirror.layout import DISCOVERY_PATH, MIRROR, MIRROR_URL_PATH, PROVIDERS_URL_PATH, REGISTRY

CONTENT_TYPES = {".json": "application/json", ".zip": "application/zip", ".sig": "application/pgp-signature",
                 ".asc": "application/pgp-keys"}


def _safe(root: Path, relative: str) -> Path | None:
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("..", ".") or p.startswith("/") for p in parts):
        return None
    candidate = root.joinpath(*parts)
    return candidate if candidate.is_file() else None


def content_type(path: Path) -> str:
    if path.suffix in CONTENT_TYPES:
        return CONTENT_TYPES[path.suffix]
    if path.name.endswith("_SHA256SUMS"):
        return "text/plain"
    # Registry documents have no extension: .../versions and .../download/<os>/<arch>.
    return "application/json"


def resolve(tree: Path, url_path: str) -> tuple[Path, str] | None:
    """The file in the mirror tree for a request path, or None (404)."""
    if url_path == "/" + DISCOVERY_PATH:
        found = _safe(tree / REGISTRY, DISCOVERY_PATH)
    elif url_path.startswith(PROVIDERS_URL_PATH):
        found = _safe(tree / REGISTRY / "v1/providers", url_path.removeprefix(PROVIDERS_URL_PATH))
    elif url_path.startswith(MIRROR_URL_PATH):
        found = _safe(tree / MIRROR, url_path.removeprefix(MIRROR_URL_PATH))
    else:
        found = None
    return (found, content_type(found)) if found else None
