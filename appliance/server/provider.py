"""The embedded server's own provider: published into its mirror at start, so templates import alone.

An installed appliance gets the provider from its bundle; `appliance server` with embedded
PostgreSQL packages it here instead (PyInstaller, the build extra), once per change of its
sources thanks to the cache, and copies it into mirror_dir when that tree lacks this build.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from appliance.config import ServerConfig
from appliance.errors import OperatorError
from appliance.provider import SOURCE
from appliance.provider.packaging import cache_path, publish_provider
from mirror.errors import MirrorError
from mirror.signing import signing_key

log = logging.getLogger(__name__)
Say = Callable[[str], None]

# Modules the build needs, and the apt package of each tool PyInstaller runs.
BUILD_MODULES = ("PyInstaller", "tf")
BUILD_TOOLS = {"objdump": "binutils"}


def signing_home(config: ServerConfig) -> Path:
    """The mirror signing key's GPG home: APPLIANCE_MIRROR_SIGNING_HOME, as `appliance mirror` reads it."""
    return Path(os.environ.get("APPLIANCE_MIRROR_SIGNING_HOME") or config.data_dir / "mirror-signing")


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def missing_build_requirements(has_module: Callable[[str], bool] = _importable,
                               which: Callable[[str], str | None] = shutil.which) -> OperatorError | None:
    """Why the provider cannot be packaged here, or None when PyInstaller, tf and objdump are all present."""
    modules = [name for name in BUILD_MODULES if not has_module(name)]
    if modules:
        return OperatorError(
            f"Cannot package the appliance Terraform provider: {' and '.join(modules)} "
            f"{'is' if len(modules) == 1 else 'are'} not installed (the appliance was installed without "
            "its build extra).",
            "Install it into this environment with pip install 'appliance[build]' (in a source checkout: "
            "make run), then restart `appliance server`. Until then templates that use the appliance "
            "provider fail to import.")
    tools = [tool for tool in BUILD_TOOLS if which(tool) is None]
    if tools:
        packages = " ".join(BUILD_TOOLS[tool] for tool in tools)
        return OperatorError(
            f"Cannot package the appliance Terraform provider: {', '.join(tools)} is not on PATH (PyInstaller "
            "needs it).",
            f"Install it (apt-get install {packages}), then restart `appliance server`.")
    return None


def ensure_provider(config: ServerConfig, say: Say) -> None:
    """Publish the provider built from these sources into config.mirror_dir unless the tree has it already."""
    started = time.monotonic()
    if not cache_path(config.provider_cache_dir).is_file():
        problem = missing_build_requirements()
        if problem is not None:
            raise problem
        say(f"Packaging the appliance Terraform provider (first start, about 20 s; cached in "
            f"{config.provider_cache_dir}) ...")
    try:
        published = publish_provider(config.mirror_dir, config.provider_cache_dir,
                                     signing_key(signing_home(config)))
    except MirrorError as err:  # PyInstaller, gpg or the mirror tree failed
        raise OperatorError(f"Could not publish the appliance Terraform provider into {config.mirror_dir}: "
                            f"{err.message}", err.hint) from err
    except OSError as err:
        raise OperatorError(f"Could not publish the appliance Terraform provider into {config.mirror_dir}: "
                            f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}.",
                            "Make mirror_dir and provider_cache_dir writable by this user, then restart.") from err
    if published.added or published.replaced:
        say(f"Published {SOURCE} into {config.mirror_dir} in {time.monotonic() - started:.0f} s.")
    log.info("provider_ready", extra={"mirror": str(config.mirror_dir), "added": published.added,
                                      "replaced": published.replaced,
                                      "seconds": round(time.monotonic() - started, 1)})
