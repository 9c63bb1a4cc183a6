"""The embedded appliance's workspace image: built once per machine, imported into its own registry.

An installed appliance gets the image from its bundle (the registry role imports it). `appliance
server` on a fresh data dir has no bundle, so, as it builds its own Terraform provider (ADR 0007), it
builds the base image with `appliance-bundle image build` (debootstrap from the machine's own apt
sources, a minute or two) into a cache beside the provider's, then imports it as base/debian:12,
the image podman-debian names. Both run in the background: the console serves meanwhile, and a
workspace started before the image is there fails saying the image is missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from appliance.children import die_with_parent
from appliance.config import ServerConfig
from appliance.errors import OperatorError
from appliance.pki.ca import CertificateAuthority
from appliance.registry.images import import_image
from appliance.registry.site import advertised_host

log = logging.getLogger(__name__)

IMAGE_NAME = "base/debian:12"
LAYOUT_REF = "debian-12"
_BUILD_TIMEOUT = 1800.0


def cached_layout(config: ServerConfig) -> Path:
    """Where the built OCI layout is kept between data dirs: beside the provider cache."""
    return config.provider_cache_dir.parent / "base-image"


class BaseImage:
    """Build (when the cache is cold) and import the base image on a thread; stop kills a running build."""

    def __init__(self, config: ServerConfig, ca: CertificateAuthority, say: Callable[[str], None]) -> None:
        self._config, self._ca, self._say = config, ca, say
        self._build: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="base-image", daemon=True)

    @property
    def needs_build(self) -> bool:
        return not (cached_layout(self._config) / "index.json").is_file()

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            layout = cached_layout(self._config) if not self.needs_build else self._built()
            if layout is None:
                return
            imported = import_image(self._ca, advertised_host(self._config), layout, IMAGE_NAME, LAYOUT_REF)
        except OperatorError as err:
            log.error("base_image_unavailable", extra={"reason": err.message, "hint": err.hint})
            self._say(f"Workspace image: {err.message} {err.hint}")
            return
        log.info("base_image_ready", extra={"image": imported.reference, "digest": imported.digest})
        self._say(f"Workspace image ready: {imported.reference}")

    def _built(self) -> Path | None:
        """Build into a partial directory and rename it into place, so a killed build leaves no half layout."""
        layout = cached_layout(self._config)
        partial = layout.with_name(layout.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        log_file = layout.with_name(layout.name + ".log")
        layout.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "bundles", "image", "build", "--output", str(partial),
                "--cache-dir", str(layout.with_name("base-image-debs"))]
        with log_file.open("wb") as output:
            # Its own process group: stop() ends debootstrap and apt too, not only the python parent.
            self._build = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                           start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))
            try:
                status = self._build.wait(_BUILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_build()
                status = -1
        if self._stopping.is_set():
            return None
        if status != 0:
            raise OperatorError(f"Building the workspace base image failed (status {status}).",
                                f"See {log_file}; 'appliance-bundle image build --output DIR' builds it by hand, and "
                                f"'appliance images import DIR --name {IMAGE_NAME}' imports it.")
        if layout.exists():  # another server on this machine built it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.replace(layout)
        return layout

    def _kill_build(self) -> None:
        build = self._build
        if build is None or build.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(build.pid, sig)
                build.wait(10)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        self._stopping.set()
        self._kill_build()
