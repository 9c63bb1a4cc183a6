"""Image references (`host:port/repo:tag` or `...@sha256:...`): which registry they name, and what."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "docker.io"  # where a reference without a registry host points, as docker and podman read it


@dataclass(frozen=True)
class Reference:
    host: str
    repository: str
    tag: str | None
    digest: str | None


def parse_reference(image: str) -> Reference:
    """Split like docker's reference grammar: the first part is a host when it has '.', ':' or is localhost."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, remainder = first, rest
    else:
        host, remainder = DEFAULT_HOST, image
    remainder, _, digest = remainder.partition("@")
    repository, sep, tag = remainder.rpartition(":")
    if not sep or "/" in tag:
        repository, tag = remainder, ""
    return Reference(host.lower(), repository, tag or (None if digest else "latest"), digest or None)


def is_internal(image: str, internal_hosts: frozenset[str]) -> bool:
    return parse_reference(image).host in internal_hosts
