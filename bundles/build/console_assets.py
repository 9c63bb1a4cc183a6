"""Build side: the console's vendored JavaScript (xterm.js and its fit addon), fetched with `npm pack`.

The web terminal's page loads xterm.js from the console's own static files (never a CDN; the CSP
allows 'self' only). The files are not committed: this step fetches each pinned npm package's
tarball once into a cache, checks its sha256 against the pin below, and extracts the few files the
page loads into appliance/console/static/vendor/, beside packages.json (name, version, tarball
sha256) which the bundle's SBOM reads. `make run`, `make test` and the bundle build run it first;
a second run with the cache warm opens no connection.

    python -m bundles.build.console_assets [PROJECT_DIR]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bundles.errors import BundleError

VENDOR_DIR = Path("appliance/console/static/vendor")  # inside the project; the wheel's package data
MANIFEST = "packages.json"
CACHE_DIR = Path(".cache/npm")


@dataclass(frozen=True)
class NpmPin:
    name: str
    version: str
    sha256: str  # of the tarball `npm pack` fetches
    files: dict[str, str]  # path inside the tarball -> file name under VENDOR_DIR

    @property
    def tarball(self) -> str:
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


PINS = (
    NpmPin("@xterm/xterm", "6.0.0", "908e66e04af6c8dc6b00dd3b54de088e2e81e5ed866284fd6c2fb3c2d1c7a3f6",
           {"package/lib/xterm.js": "xterm.js", "package/css/xterm.css": "xterm.css",
            "package/LICENSE": "xterm.LICENSE"}),
    NpmPin("@xterm/addon-fit", "0.11.0", "26003b4517a132b64e4ff228fd88a5fda3fff5e606c76093f6dcff772e9ecec0",
           {"package/lib/addon-fit.js": "addon-fit.js", "package/LICENSE": "addon-fit.LICENSE"}),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(pins: tuple[NpmPin, ...]) -> list[dict[str, str]]:
    return [{"name": p.name, "version": p.version, "sha256": p.sha256, "tarball": p.tarball} for p in pins]


def fetched(pin: NpmPin, cache: Path) -> Path:
    """The pin's tarball in `cache`, fetched with `npm pack` unless already there; its sha256 checked."""
    tarball = cache / pin.tarball
    if not tarball.is_file() or _sha256(tarball) != pin.sha256:
        if shutil.which("npm") is None:
            raise BundleError(f"npm is missing, so {pin.name}@{pin.version} cannot be fetched.",
                              "Install Node.js and npm on the build machine (apt-get install npm), or copy "
                              f"{pin.tarball} into {cache}.")
        cache.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["npm", "pack", f"{pin.name}@{pin.version}", "--pack-destination", str(cache)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0 or not tarball.is_file():
            raise BundleError(f"npm pack {pin.name}@{pin.version} failed: {result.stderr.strip()[-400:]}",
                              "Check the build machine's access to the npm registry (npm config get registry).")
    if (actual := _sha256(tarball)) != pin.sha256:
        tarball.unlink()
        raise BundleError(f"{pin.tarball} has sha256 {actual}, not the pinned {pin.sha256}.",
                          "The registry served other bytes for a pinned version: do not build with them. Review "
                          "the change upstream, then update the pin in bundles/build/console_assets.py.")
    return tarball


def _extract(pin: NpmPin, tarball: Path, target: Path) -> None:
    with tarfile.open(tarball) as archive:
        for inside, name in pin.files.items():
            member = archive.extractfile(inside)
            if member is None:
                raise BundleError(f"{pin.tarball} has no {inside}.", "Fix the file list of its pin.")
            (target / name).write_bytes(member.read())


def vendor(project: Path, cache: Path | None = None, pins: tuple[NpmPin, ...] = PINS) -> Path:
    """Make project/VENDOR_DIR hold the pinned packages' files; nothing to do when it already does."""
    target = project / VENDOR_DIR
    wanted = _manifest(pins)
    manifest = target / MANIFEST
    names = [name for pin in pins for name in pin.files.values()]
    if (manifest.is_file() and json.loads(manifest.read_text()) == wanted
            and all((target / name).is_file() for name in names)):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for pin in pins:
        _extract(pin, fetched(pin, cache or project / CACHE_DIR), target)
    manifest.write_text(json.dumps(wanted, indent=1) + "\n")
    return target


def vendored_packages(project: Path) -> list[dict[str, str]]:
    """What vendor() recorded: name, version, sha256 and tarball of each package (for the SBOM)."""
    manifest = project / VENDOR_DIR / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"{manifest} is missing.", "Run 'python -m bundles.build.console_assets' first.")
    packages: list[dict[str, str]] = json.loads(manifest.read_text())
    return packages


def main(argv: list[str]) -> int:
    project = Path(argv[0]) if argv else Path.cwd()
    try:
        print(f"console assets: {vendor(project)}")
    except BundleError as err:
        print(f"error: {err.message}\nhint: {err.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
