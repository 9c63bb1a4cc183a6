"""Package a provider written in Python as a provider zip Terraform can install (build side).

PyInstaller builds it --onedir, and the whole folder is zipped: the executable plus its
`_internal/` libraries. (A --onefile build unpacks itself at every launch, and Terraform starts
a provider several times per run.) The zip is deterministic: sorted entries, fixed times.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from mirror.errors import MirrorError
from mirror.layout import archive_name

ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def build_provider_zip(entry: Path, provider_type: str, version: str, out_dir: Path, *, os_name: str = "linux",
                       arch: str = "amd64", work: Path | None = None) -> Path:
    """Build `entry` (a script calling tf.runner.run_provider) into <out_dir>/<provider zip>."""
    executable = f"terraform-provider-{provider_type}_v{version}"
    scratch = Path(tempfile.mkdtemp(prefix="provider-build-", dir=work))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "PyInstaller", "--onedir", "--noconfirm", "--clean", "--log-level", "WARN",
             "--name", executable, "--distpath", str(scratch / "dist"), "--workpath", str(scratch / "build"),
             "--specpath", str(scratch), "--collect-all", "tf", str(entry)],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = " | ".join(result.stderr.strip().splitlines()[-4:])
            raise MirrorError(f"PyInstaller failed to build provider {provider_type}: {tail}",
                              "Install the build extra (pip install '.[build]') and retry.")
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / archive_name(provider_type, version, os_name, arch)
        _zip_folder(scratch / "dist" / executable, target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _zip_folder(folder: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
            if path.is_dir() or (path.is_symlink() and path.is_dir()):
                continue
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), ZIP_TIME)
            info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    partial.replace(target)
