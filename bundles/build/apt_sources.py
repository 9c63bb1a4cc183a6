"""The Debian mirror this machine already uses, read from its apt sources (never hard-coded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bundles.errors import BundleError

APT_DIR = Path("/etc/apt")


@dataclass(frozen=True)
class DebianMirror:
    main: str          # serves <distribution> and <distribution>-updates
    security: str | None


def _deb822_entries(text: str) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if current:
                entries.append(current)
            current = {}
        elif not line.startswith("#") and ":" in line and not line.startswith((" ", "\t")):
            key, _, value = line.partition(":")
            current[key.strip().lower()] = value.strip()
    return entries


def _one_line_entries(text: str) -> list[dict[str, str]]:
    entries = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "deb":
            words = [w for w in words[1:] if not w.startswith("[")] if "[" in line else words[1:]
            entries.append({"types": "deb", "uris": words[0], "suites": words[1],
                            "components": " ".join(words[2:])})
    return entries


def _entries(apt_dir: Path) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        found += _deb822_entries(path.read_text())
    for path in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        if path.is_file():
            found += _one_line_entries(path.read_text())
    return found


def debian_mirror(distribution: str, apt_dir: Path = APT_DIR) -> DebianMirror:
    """The URIs of this machine's apt sources that serve `distribution` (main) and its security suite."""
    main = security = None
    for entry in _entries(apt_dir):
        if "deb" not in entry.get("types", "deb").split() or "main" not in entry.get("components", "").split():
            continue
        suites = entry.get("suites", "").split()
        uri = entry.get("uris", "").split()[0] if entry.get("uris") else None
        if uri and distribution in suites and main is None:
            main = uri.rstrip("/")
        if uri and f"{distribution}-security" in suites and security is None:
            security = uri.rstrip("/")
    if main is None:
        raise BundleError(f"No apt source on this machine serves Debian {distribution} main.",
                          f"Add one to {apt_dir}/sources.list.d/ (the build machine needs a Debian mirror).")
    return DebianMirror(main, security)


def sources_list(mirror: DebianMirror, distribution: str) -> str:
    lines = [f"deb {mirror.main} {distribution} main", f"deb {mirror.main} {distribution}-updates main"]
    if mirror.security:
        lines.append(f"deb {mirror.security} {distribution}-security main")
    return "\n".join(lines) + "\n"
