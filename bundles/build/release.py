"""The release version: the appliance package's own, never a second number typed at build time.

A bundle's manifest version is what the installer pins (`pip install appliance==VERSION`), so it
must be the version of the appliance wheel inside, which is pyproject.toml's. It is settled,
and a disagreeing `--version` refused, before any slow collection starts.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bundles.errors import BundleError

# MAJOR.MINOR.PATCH only: SemVer pre-releases (1.0.0-rc.1) are spelled differently by Python
# packaging (1.0.0rc1), so the manifest, the wheel and `appliance --version` would disagree.
_RELEASE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def project_version(project: Path) -> tuple[str, str]:
    """(name, version) from the [project] table of `project`/pyproject.toml."""
    path = project / "pyproject.toml"
    try:
        table = tomllib.loads(path.read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BundleError(f"Cannot read the release version from {path}: {err}.",
                          "Point [wheels] project in the recipe at the appliance source tree.") from err
    name, version = table.get("name"), table.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise BundleError(f"{path} has no static [project] name and version.",
                          "Set version = \"MAJOR.MINOR.PATCH\" in its [project] table.")
    return name, version


def staged_wheel_version(stage: Path, name: str) -> str | None:
    """The version of `name`'s wheel in the stage's wheels/ folder, if one is there."""
    prefix = re.sub(r"[-_.]+", "_", name).lower() + "-"
    found = [p.name for p in (stage / "wheels").glob("*.whl") if p.name.lower().startswith(prefix)]
    if len(found) > 1:
        raise BundleError(f"The stage {stage} holds {len(found)} {name} wheels: {', '.join(sorted(found))}.",
                          "Keep the one to release and remove the others, or collect a new stage.")
    return found[0][len(prefix):].split("-", 1)[0] if found else None


def release_version(project: Path, *, stage: Path | None = None, requested: str | None = None) -> str:
    """The version to release: the wheel's in a reused stage, else the project's; `requested` must agree."""
    name, version = project_version(project)
    source = f"{project / 'pyproject.toml'}"
    staged = staged_wheel_version(stage, name) if stage is not None else None
    if stage is not None and staged is not None:
        version, source = staged, f"the {name} wheel in {stage / 'wheels'}"
    if not _RELEASE.match(version):
        raise BundleError(f"The release version {version!r} (from {source}) is not MAJOR.MINOR.PATCH.",
                          "Set a plain version such as 1.4.0 in pyproject.toml; pre-release tags are "
                          "written differently by SemVer and by Python packaging.")
    if requested is not None and requested != version:
        rebuild = (f"collect a new stage (without --stage) from a source tree at {requested}" if staged
                   else f"set version = \"{requested}\" in {project / 'pyproject.toml'} and build again")
        raise BundleError(
            f"--version {requested} does not match the appliance's own version {version} (from {source}); "
            "a bundle must carry the version of the wheel it installs.",
            f"Drop --version to release {version}, or {rebuild}.")
    return version


def check_built_wheel(stage: Path, project: Path, release: str) -> None:
    """The wheel pip built must carry the release version, or the installer's pin finds nothing."""
    name, _ = project_version(project)
    built = staged_wheel_version(stage, name)
    if built != release:
        raise BundleError(f"The {name} wheel built from {project} has version {built}, not {release}.",
                          "Check that pyproject.toml's [project] version is static, then build again.")
