"""Bundles made from the session's v1 in seconds, never by a second build.

- "v2": v1 unpacked, its appliance wheel rewritten at NEXT with one more migration (a new, empty
  table `upgrade_probe`), the SBOM updated, the manifest written again, signed with v1's key.
- "broken": the same v2 whose console cannot start (appliance/wsgi.py raises on import).
- "badmigration": the same v2 whose new migration fails half-way (a division by zero after its CREATE TABLE).
- "patch": v2's migrations at PATCH (NEXT's next patch): the release a signed downgrade goes back from.
- "tampered", "older", "expired": tiny real bundles signed with the same key (tests/support/bundles.py)
  that verification refuses before anything changes: a changed byte, a version below v1, an expiry past.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import semver

from appliance import __version__ as checkout_version
from bundles.build.assemble import assemble
from bundles.layout import SBOM
from tests.e2e.appliance_host import VERSION, Release
from tests.support.bundles import build_bundle, make_stage, sign_bundle

NEXT = str(semver.Version.parse(VERSION).bump_minor())
PATCH = str(semver.Version.parse(NEXT).bump_patch())
PROBE_SQL = "CREATE TABLE upgrade_probe (id bigint PRIMARY KEY);\n"
FAILING_SQL = PROBE_SQL + "SELECT 1 / 0;\n"
BROKEN_WSGI = 'raise RuntimeError("this release cannot start (the upgrade e2e test made it so)")\n'
_MIGRATION = re.compile(r"^appliance/db/migrations/(\d{6})_[a-z0-9_]+\.up\.sql$")


def derived_bundle(release: Release, folder: Path, kind: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("v2", "broken", "badmigration", "patch"):
        bundle = _next_release(release, folder, PATCH if kind == "patch" else NEXT, flaw=kind)
    else:
        bundle = _tiny(folder, kind)
    sign_bundle(bundle, release.key)
    if kind == "tampered":
        _flip_a_wheel_byte(bundle)
    return bundle


def _next_release(release: Release, folder: Path, version: str, *, flaw: str) -> Path:
    stage = _v1_stage(release)
    copy = folder / "stage"
    subprocess.run(["cp", "-al", str(stage), str(copy)], check=True)   # hard links: only changed files are new
    wheel = copy / f"wheels/appliance-{VERSION}-py3-none-any.whl"
    _rewrite_wheel(wheel, copy / f"wheels/appliance-{version}-py3-none-any.whl", version, flaw=flaw)
    wheel.unlink()
    sbom = copy / SBOM
    text = sbom.read_text().replace(f"appliance-{VERSION}-py3-none-any.whl", f"appliance-{version}-py3-none-any.whl")
    data = json.loads(text)
    for component in data.get("components", []):
        if component.get("name") == "appliance" and component.get("version") == VERSION:
            component["version"] = version
            component["purl"] = f"pkg:pypi/appliance@{version}"
    sbom.unlink()
    sbom.write_text(json.dumps(data, indent=1))
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    bundle = assemble(copy, folder, version=version, created=created, expires_after=timedelta(days=365),
                      min_upgrade_from=VERSION, build_info={"commit": "derived-from-" + VERSION})
    shutil.rmtree(copy)
    return bundle


def _v1_stage(release: Release) -> Path:
    """v1's members unpacked once (beside the bundle), shared by every derived release."""
    stage = release.bundle.parent / "v1-stage"
    if not stage.exists():
        partial = stage.with_name(".v1-stage")
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(release.bundle) as tar:
            tar.extractall(partial, members=[m for m in tar.getmembers() if not m.name.startswith("manifest.json")],
                           filter="data")
        partial.rename(stage)
    return stage


def _rewrite_wheel(source: Path, target: Path, version: str, *, flaw: str) -> None:
    """The appliance wheel at `version`: dist-info renamed, one more migration, RECORD written again."""
    with zipfile.ZipFile(source) as wheel:
        files = {name: wheel.read(name) for name in wheel.namelist()}
    old_info, new_info = f"appliance-{VERSION}.dist-info/", f"appliance-{version}.dist-info/"
    renamed = {name.replace(old_info, new_info, 1): body for name, body in files.items()
               if not name.endswith(".dist-info/RECORD")}
    metadata = new_info + "METADATA"
    renamed[metadata] = renamed[metadata].replace(f"\nVersion: {VERSION}\n".encode(),
                                                  f"\nVersion: {version}\n".encode())
    numbers = [int(m.group(1)) for name in renamed if (m := _MIGRATION.match(name))]
    probe = FAILING_SQL if flaw == "badmigration" else PROBE_SQL
    renamed[f"appliance/db/migrations/{max(numbers) + 1:06d}_upgrade_probe.up.sql"] = probe.encode()
    if flaw == "broken":
        renamed["appliance/wsgi.py"] = BROKEN_WSGI.encode()
    record = [f"{name},sha256={_urlsafe_digest(body)},{len(body)}" for name, body in renamed.items()]
    renamed[new_info + "RECORD"] = ("\n".join([*record, f"{new_info}RECORD,,"]) + "\n").encode()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for name, body in renamed.items():
            out.writestr(name, body)


def _urlsafe_digest(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


def _tiny(folder: Path, kind: str) -> Path:
    stage = make_stage(folder)
    if kind == "older":
        return build_bundle(stage, folder / "out", version=checkout_version, min_upgrade_from="0.0.0",
                            created=datetime.now(UTC) - timedelta(days=1))
    if kind == "expired":
        return build_bundle(stage, folder / "out", version=NEXT, min_upgrade_from="0.0.0",
                            created=datetime.now(UTC) - timedelta(days=400), expires_after=timedelta(days=30))
    return build_bundle(stage, folder / "out", version=NEXT, min_upgrade_from="0.0.0",
                        created=datetime.now(UTC) - timedelta(days=1))


def _flip_a_wheel_byte(bundle: Path) -> None:
    with tarfile.open(bundle) as tar:
        wheel = next(i for i in tar.getmembers() if i.name.startswith("wheels/flask-"))
    with bundle.open("r+b") as raw:
        raw.seek(wheel.offset_data + 100)
        raw.write(b"\x00\x01\x02")
