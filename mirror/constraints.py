"""Terraform version constraints ("~> 3.1", ">= 1.2, < 2.0", "= 1.0.0", "!= 1.1.0"), evaluated exactly."""

from __future__ import annotations

import re
from collections.abc import Callable

import semver

_PART = re.compile(r"^\s*(?P<op>~>|>=|<=|!=|=|>|<)?\s*v?(?P<version>\d+(\.\d+){0,2}(-[0-9A-Za-z.-]+)?)\s*$")


class ConstraintError(ValueError):
    pass


def _pad(text: str) -> tuple[semver.Version, int]:
    """A version and how many of its parts were written (the pessimistic operator cares)."""
    core, dash, pre = text.partition("-")
    parts = core.split(".")
    padded = ".".join([*parts, *["0"] * (3 - len(parts))]) + (f"-{pre}" if dash else "")
    return semver.Version.parse(padded), len(parts)


def _pessimistic(bound: semver.Version, written: int) -> Callable[[semver.Version], bool]:
    """~> allows the rightmost written part to grow: ~> 1.2 is >= 1.2, < 2.0; ~> 1.2.3 is >= 1.2.3, < 1.3.0."""
    upper = bound.bump_minor() if written == 3 else bound.bump_major()
    return lambda v: bound <= v < upper


def parse_constraint(text: str) -> Callable[[semver.Version], bool]:
    checks: list[Callable[[semver.Version], bool]] = []
    for piece in (text or "").split(","):
        if not piece.strip():
            continue
        match = _PART.match(piece)
        if match is None:
            raise ConstraintError(f"{piece.strip()!r} is not a Terraform version constraint")
        version, written = _pad(match["version"])
        op = match["op"] or "="
        checks.append({
            "=": lambda v, b=version: v == b, "!=": lambda v, b=version: v != b,
            ">": lambda v, b=version: v > b, ">=": lambda v, b=version: v >= b,
            "<": lambda v, b=version: v < b, "<=": lambda v, b=version: v <= b,
        }[op] if op != "~>" else _pessimistic(version, written))
    return lambda v: all(check(v) for check in checks)


def satisfying(constraint: str, versions: list[str]) -> list[str]:
    """Versions meeting the constraint; like Terraform, prereleases only when asked for exactly."""
    accepts = parse_constraint(constraint)
    chosen = []
    for text in versions:
        version = semver.Version.parse(text)
        if version.prerelease and text not in (constraint or ""):
            continue
        if accepts(version):
            chosen.append(text)
    return chosen
