"""The bundle recipe (bundles/appliance.toml): what to collect, read into one frozen object."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bundles.errors import BundleError

_DURATION = re.compile(r"^(\d+)d$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


@dataclass(frozen=True)
class Recipe:
    path: Path
    product: str
    expires_after: timedelta
    min_upgrade_from: str
    distribution: str
    architecture: str
    python: str
    baseline_packages: tuple[str, ...]
    debs: tuple[str, ...]
    project: Path
    extras: tuple[str, ...]
    installer_entry: Path
    installer_name: str
    installer_collect: tuple[str, ...]
    playbooks: Path
    docs: tuple[Path, ...]
    terraform: Path | None
    providers: Path | None
    images: tuple[Path, ...]

    @property
    def root(self) -> Path:
        """Paths in the recipe are relative to the repository holding it."""
        return self.path.parent.parent


def _error(path: Path, key: str, problem: str) -> BundleError:
    return BundleError(f"Recipe {path}: {key} {problem}.", "Fix that key; see bundles/appliance.toml for the format.")


def _get(data: dict[str, Any], path: Path, dotted: str, kind: type, default: Any = ...) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is ...:
                raise _error(path, dotted, "is missing")
            return default
        node = node[part]
    if not isinstance(node, kind):
        raise _error(path, dotted, f"must be a {kind.__name__}")
    return node


def _packages(data: dict[str, Any], path: Path, key: str) -> tuple[str, ...]:
    values = _get(data, path, key, list, [])
    for value in values:
        if not isinstance(value, str) or not _PACKAGE.match(value):
            raise _error(path, key, f"has {value!r}, which is not a Debian package name")
    return tuple(values)


def load_recipe(path: Path) -> Recipe:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise BundleError(f"Recipe {path} does not exist.", "Pass --recipe bundles/appliance.toml.") from err
    except tomllib.TOMLDecodeError as err:
        raise BundleError(f"Recipe {path} is not valid TOML: {err}.", "Fix the line it names.") from err
    match = _DURATION.match(_get(data, path, "expires_after", str))
    if not match or int(match.group(1)) < 1:
        raise _error(path, "expires_after", "must be a number of days such as '365d'")
    root = path.resolve().parent.parent
    optional = {key: _get(data, path, key, str, None) for key in ("terraform.binary", "providers.mirror")}
    return Recipe(
        path=path.resolve(),
        product=_get(data, path, "product", str),
        expires_after=timedelta(days=int(match.group(1))),
        min_upgrade_from=_get(data, path, "min_upgrade_from", str),
        distribution=_get(data, path, "target.distribution", str),
        architecture=_get(data, path, "target.architecture", str),
        python=_get(data, path, "target.python", str),
        baseline_packages=_packages(data, path, "target.baseline_packages"),
        debs=_packages(data, path, "debs.packages"),
        project=root / _get(data, path, "wheels.project", str),
        extras=tuple(_get(data, path, "wheels.extras", list, [])),
        installer_entry=root / _get(data, path, "installer.entry", str),
        installer_name=_get(data, path, "installer.name", str),
        installer_collect=tuple(_get(data, path, "installer.collect", list, [])),
        playbooks=root / _get(data, path, "playbooks.path", str),
        docs=tuple(root / f for f in _get(data, path, "docs.files", list, [])),
        terraform=Path(optional["terraform.binary"]) if optional["terraform.binary"] else None,
        providers=root / optional["providers.mirror"] if optional["providers.mirror"] else None,
        images=tuple(root / p for p in _get(data, path, "images.layouts", list, [])),
    )
