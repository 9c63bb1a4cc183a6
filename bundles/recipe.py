"""The bundle recipe (bundles/appliance.toml): what to collect, read into one frozen object."""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass, replace
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
    providers_from: tuple[Path, ...]
    providers_registry: tuple[Path, ...]
    signing_home: Path
    images: tuple[Path, ...]
    base_image: str | None = None      # tag of the workspace base image built into images/<tag>
    appliance_provider: bool = False  # package appliance/provider into the mirror and the registry
    appliance_agent: bool = False     # package appliance/agent into agent/

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


def _binary(name: str) -> Path:
    """A path, or a command name looked up on PATH (resolved when the bundle is built)."""
    found = shutil.which(name) if "/" not in name else name
    return Path(found or name)


def with_overrides(recipe: Recipe, *, terraform: Path | None = None, providers_from: tuple[Path, ...] = (),
                   registry_from: tuple[Path, ...] = ()) -> Recipe:
    """The recipe with build-time additions (`appliance-bundle build --terraform/--providers-from/...`)."""
    return replace(recipe, terraform=terraform or recipe.terraform,
                   providers_from=recipe.providers_from + providers_from,
                   providers_registry=recipe.providers_registry + registry_from)


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
    terraform = _get(data, path, "terraform.binary", str, None)
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
        terraform=_binary(terraform) if terraform else None,
        providers_from=tuple(root / p for p in _get(data, path, "providers.from", list, [])),
        providers_registry=tuple(root / p for p in _get(data, path, "providers.registry", list, [])),
        signing_home=root / _get(data, path, "providers.signing_home", str, ".cache/bundle/mirror-signing"),
        images=tuple(root / p for p in _get(data, path, "images.layouts", list, [])),
        base_image=_get(data, path, "images.base", str, None) or None,
        appliance_provider=_get(data, path, "providers.appliance", bool, False),
        appliance_agent=_get(data, path, "agent.appliance", bool, False),
    )
