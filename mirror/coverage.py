"""Which providers a set of templates asks for, and whether the mirror can satisfy every one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

from mirror.constraints import ConstraintError, satisfying
from mirror.errors import MirrorError
from mirror.inventory import entries

DEFAULT_HOST = "registry.terraform.io"


@dataclass(frozen=True)
class Requirement:
    source: str       # hostname/namespace/type
    constraint: str
    template: Path


@dataclass(frozen=True)
class Finding:
    requirement: Requirement
    available: tuple[str, ...]   # versions of this provider in the mirror, for this platform
    chosen: str | None          # the newest version that satisfies the constraint

    @property
    def is_covered(self) -> bool:
        return self.chosen is not None


def normalise_source(source: str) -> str:
    parts = source.strip().lower().split("/")
    if len(parts) == 1:
        return f"{DEFAULT_HOST}/hashicorp/{parts[0]}"
    if len(parts) == 2:
        return f"{DEFAULT_HOST}/{parts[0]}/{parts[1]}"
    return "/".join(parts[-3:])


def _blocks(value: Any) -> list[dict[str, Any]]:
    """python-hcl2 gives blocks as lists of dicts; accept a bare dict too."""
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def requirements(template: Path) -> list[Requirement]:
    found = []
    for tf_file in sorted(template.glob("*.tf")):
        try:
            with tf_file.open() as handle:
                parsed = hcl2.load(handle)
        except Exception as err:  # python-hcl2 raises lark and its own errors; all mean "does not parse"
            raise MirrorError(f"{tf_file}: the template does not parse ({str(err).splitlines()[0]}).",
                              "Fix the HCL; `terraform validate` in that folder shows the same error.") from err
        for terraform in _blocks(parsed.get("terraform", [])):
            for block in _blocks(terraform.get("required_providers", [])):
                for name, spec in block.items():
                    if name.startswith("__"):
                        continue  # python-hcl2's own markers, such as __is_block__
                    spec = spec if isinstance(spec, dict) else {"version": spec}
                    source = str(spec.get("source", name)).strip('"')
                    found.append(Requirement(normalise_source(source), str(spec.get("version", "")).strip('"'),
                                             tf_file))
    return found


def coverage(tree: Path, templates: list[Path], *, appliance_host: str, platform: str = "linux_amd64") -> list[Finding]:
    offered: dict[str, list[str]] = {}
    for entry in entries(tree):
        source = entry.source.replace("(appliance)", appliance_host.lower())
        if entry.platform == platform:
            offered.setdefault(source, []).append(entry.version)
    findings = []
    for template in templates:
        if not template.is_dir():
            raise MirrorError(f"{template} is not a template folder.", "Pass folders holding *.tf files.")
        for requirement in requirements(template):
            available = sorted(set(offered.get(requirement.source, [])))
            try:
                matching = satisfying(requirement.constraint, available)
            except ConstraintError as err:
                raise MirrorError(f"{requirement.template}: provider {requirement.source}: {err}.",
                                  "Use Terraform's syntax, e.g. '~> 1.2' or '>= 1.0, < 2.0'.") from err
            chosen = max(matching, key=_semver) if matching else None
            findings.append(Finding(requirement, tuple(available), chosen))
    return findings


def _semver(text: str) -> Any:
    import semver

    return semver.Version.parse(text)
