"""The appliance control plane and what runs inside workspaces."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _release_version() -> str:
    """pyproject.toml's version, the one release version (docs/adr/0006-one-release-version.md).

    Read from the source tree when running from one, because an editable install's metadata keeps
    the version it was installed at; from the installed wheel's metadata everywhere else.
    """
    source = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if source.is_file():
        project = tomllib.loads(source.read_text()).get("project", {})
        if project.get("name") == "appliance" and isinstance(project.get("version"), str):
            return str(project["version"])
    try:
        return version("appliance")
    except PackageNotFoundError:  # a frozen executable (the provider) carries no metadata
        return "0.0.0+unknown"


__version__ = _release_version()
