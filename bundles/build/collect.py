"""Collect every artifact the recipe names into a stage folder laid out like the bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bundles.build.appliance_agent import package_appliance_agent
from bundles.build.appliance_provider import package_appliance_provider
from bundles.build.base_image import cached_base_image
from bundles.build.console_assets import vendor, vendored_packages
from bundles.build.debs import baseline_rootfs, download_closure, write_repository_index
from bundles.build.executable import build_executable
from bundles.build.wheels import collect_wheels
from bundles.errors import BundleError
from bundles.layout import NPM_PACKAGES
from bundles.recipe import Recipe
from mirror.build import build_mirror
from mirror.signing import signing_key

Step = Callable[[str], None]


def _copy_tree(source: Path, target: Path) -> None:
    if not source.is_dir():
        raise BundleError(f"{source} is not a folder.", "Fix the path in the recipe.")
    shutil.copytree(source, target, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    dirs_exist_ok=True)


def _terraform_version(binary: Path) -> str:
    result = subprocess.run([str(binary), "version", "-json"], capture_output=True, text=True, check=False)
    try:
        return str(json.loads(result.stdout)["terraform_version"])
    except (ValueError, KeyError) as err:
        raise BundleError(f"{binary} did not report a terraform version.", "Point terraform.binary at terraform.") \
            from err


def collect(recipe: Recipe, stage: Path, cache: Path, *, version: str, created: datetime,
            step: Step = lambda _: None) -> None:
    """Fill `stage` from the recipe for release `version`. Slow, connected work: pip, debootstrap, apt, PyInstaller."""
    stage.mkdir(parents=True, exist_ok=True)
    versions: dict[str, str] = {}

    step("console assets: xterm.js from npm into the appliance's static files (cached after the first build)")
    vendor(recipe.project, cache / "npm")
    (stage / NPM_PACKAGES).write_text(json.dumps(vendored_packages(recipe.project), indent=1) + "\n")

    step("wheels: the appliance wheel and dependency wheels for the target")
    collect_wheels(recipe.project, stage / "wheels", python=recipe.python, extras=recipe.extras)

    if recipe.debs:
        step(f"debs: debootstrap baseline for {recipe.distribution} (cached after the first build)")
        baseline = baseline_rootfs(cache, recipe.distribution, recipe.architecture, recipe.baseline_packages)
        step(f"debs: {', '.join(recipe.debs)} and their dependency closure")
        download_closure(baseline, cache / "work", recipe.distribution, recipe.debs, stage / "debs")
        write_repository_index(stage / "debs", distribution=recipe.distribution,
                               architecture=recipe.architecture, date=created)

    step(f"installer: {recipe.installer_name} with PyInstaller")
    build_executable(recipe.installer_entry, recipe.installer_name, stage / "installer", cache / "pyinstaller",
                     recipe.installer_collect)
    versions[f"installer/{recipe.installer_name}"] = version

    step("playbooks and docs")
    if recipe.playbooks.exists():
        _copy_tree(recipe.playbooks, stage / "playbooks")
    for doc in recipe.docs:
        (stage / "docs").mkdir(exist_ok=True)
        shutil.copyfile(doc, stage / "docs" / doc.name)

    if recipe.terraform:
        step("terraform binary")
        if not recipe.terraform.is_file():
            raise BundleError(f"The terraform binary {recipe.terraform} does not exist.",
                              "Install terraform on the build machine, or pass --terraform PATH.")
        (stage / "terraform").mkdir(exist_ok=True)
        shutil.copy2(recipe.terraform, stage / "terraform" / "terraform")
        versions["terraform/terraform"] = _terraform_version(recipe.terraform)
    sources, registries = list(recipe.providers_from), list(recipe.providers_registry)
    if recipe.appliance_provider:
        step("appliance Terraform provider with PyInstaller (cached after the first build)")
        mirror_from, registry_from = package_appliance_provider(cache, recipe.project, version)
        sources.append(mirror_from)
        registries.append(registry_from)
    if sources or registries:
        step("provider mirror and registry")
        key = signing_key(recipe.signing_home) if registries else None
        build_mirror(stage / "providers", sources, registries, key)
    if recipe.appliance_agent:
        step("workspace agent with PyInstaller (cached after the first build)")
        for binary in package_appliance_agent(cache, recipe.project, stage / "agent"):
            versions[binary.relative_to(stage).as_posix()] = version
    if recipe.base_image:
        step(f"image {recipe.base_image}: the workspace base image (cached by its inputs, about 2 minutes once)")
        _copy_tree(cached_base_image(cache, tag=recipe.base_image), stage / "images" / recipe.base_image)
    for layout in recipe.images:
        step(f"image layout {layout.name}")
        _copy_tree(layout, stage / "images" / layout.name)
    (stage / ".versions.json").write_text(json.dumps(versions, indent=1, sort_keys=True) + "\n")
