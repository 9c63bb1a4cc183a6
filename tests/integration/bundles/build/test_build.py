"""Assembling bundles: byte-identical from the same inputs, a valid SBOM, inspect and diff, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from appliance import __version__ as appliance_version
from bundles.errors import BundleError
from bundles.inspect import diff_bundles, inspect_bundle
from bundles.verify import TrustPolicy
from tests.support.bundles import build_bundle, make_key, make_stage, sign_bundle


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bundles", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


def test_the_same_inputs_give_byte_identical_bundles(tmp_path: Path) -> None:
    stage = make_stage(tmp_path)
    first = build_bundle(stage, tmp_path / "one")
    second = build_bundle(stage, tmp_path / "two")
    assert _sha(first) == _sha(second)
    with_cli = [_cli("build", "--recipe", "bundles/appliance.toml", "--stage", str(stage),
                     "--output", str(tmp_path / name), env={"SOURCE_DATE_EPOCH": "1780000000"})
                for name in ("cli-one", "cli-two")]
    assert all(r.returncode == 0 for r in with_cli), with_cli[0].stderr
    one, two = (tmp_path / name / f"appliance-{appliance_version}.bundle" for name in ("cli-one", "cli-two"))
    assert _sha(one) == _sha(two)


def test_the_release_version_is_the_packages_and_a_matching_version_flag_is_accepted(tmp_path: Path) -> None:
    stage = make_stage(tmp_path)
    built = _cli("build", "--recipe", "bundles/appliance.toml", "--stage", str(stage), "--version",
                 appliance_version, "--output", str(tmp_path / "dist"))
    assert built.returncode == 0, built.stderr
    report = inspect_bundle(tmp_path / "dist" / f"appliance-{appliance_version}.bundle", None).to_json()
    assert report["version"] == appliance_version
    sbom = json.loads((stage / "sbom.cdx.json").read_text())
    assert sbom["metadata"]["component"]["version"] == appliance_version


def test_a_different_version_flag_is_refused_before_any_work(tmp_path: Path) -> None:
    """The bug this guards: 0.0.1 was built and signed, then could not install (no appliance==0.0.1 wheel)."""
    started = time.monotonic()
    refused = _cli("build", "--recipe", "bundles/appliance.toml", "--version", "0.0.1", "--output",
                   str(tmp_path / "dist"), "--cache-dir", str(tmp_path / "cache"))
    assert refused.returncode == 1
    assert (f"--version 0.0.1 does not match the appliance's own version {appliance_version} (from "
            in refused.stderr), refused.stderr
    assert f"Drop --version to release {appliance_version}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert time.monotonic() - started < 30  # refused at once, not after collecting wheels and debs
    assert not any((tmp_path / name).exists() for name in ("dist", "cache"))


def test_a_reused_stage_releases_the_version_of_the_wheel_it_holds(tmp_path: Path) -> None:
    stage = make_stage(tmp_path, appliance_version="7.0.3")
    refused = _cli("build", "--recipe", "bundles/appliance.toml", "--stage", str(stage), "--version",
                   appliance_version, "--output", str(tmp_path / "dist"))
    assert refused.returncode == 1
    assert f"--version {appliance_version} does not match the appliance's own version 7.0.3" in refused.stderr
    assert "collect a new stage" in refused.stderr
    built = _cli("build", "--recipe", "bundles/appliance.toml", "--stage", str(stage), "--output",
                 str(tmp_path / "dist"))
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "dist" / "appliance-7.0.3.bundle").is_file()


@pytest.mark.parametrize("version", ["1.0.0rc1", "1.0", "01.2.3"],
                         ids=["a pre-release (SemVer 1.0.0-rc.1)", "two parts", "a leading zero"])
def test_a_release_version_that_python_packaging_would_spell_differently_is_refused(
        tmp_path: Path, version: str) -> None:
    stage = make_stage(tmp_path, appliance_version=version)
    refused = _cli("build", "--recipe", "bundles/appliance.toml", "--stage", str(stage), "--output",
                   str(tmp_path / "dist"))
    assert refused.returncode == 1
    assert f"The release version '{version}'" in refused.stderr and "is not MAJOR.MINOR.PATCH" in refused.stderr
    assert not (tmp_path / "dist").exists()


def test_headers_are_normalised_and_the_manifest_comes_first(tmp_path: Path) -> None:
    import tarfile

    bundle = build_bundle(make_stage(tmp_path), tmp_path / "dist")
    with tarfile.open(bundle) as tar:
        infos = tar.getmembers()
    assert infos[0].name == "manifest.json"
    assert [i.name for i in infos[1:]] == sorted(i.name for i in infos[1:])
    assert {(i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, "", "")}
    assert len({i.mtime for i in infos}) == 1


def test_the_sbom_is_valid_cyclonedx_and_lists_every_artifact(tmp_path: Path) -> None:
    stage = make_stage(tmp_path)
    document = (stage / "sbom.cdx.json").read_text()
    errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(document)
    assert errors is None, errors
    sbom = json.loads(document)
    kinds = {(c["properties"][0]["value"], c["name"], c["version"]) for c in sbom["components"]}
    assert ("deb", "nginx", "1.0-1") in kinds
    assert ("wheel", "flask", "2.0.0") in kinds
    assert ("provider", "registry.terraform.io/hashicorp/random", "3.6.0") in kinds
    assert ("binary", "appliance-agent-linux-amd64", "unknown") in kinds  # no .versions.json in this stage
    assert {k for k, _, _ in kinds} == {"binary", "deb", "image", "provider", "wheel"}
    for component in sbom["components"]:
        path = stage / component["properties"][1]["value"]
        assert component["hashes"][0]["content"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_inspect_reports_signers_sizes_and_sbom_counts(tmp_path: Path) -> None:
    key = make_key(tmp_path, "a")
    bundle = build_bundle(make_stage(tmp_path), tmp_path / "dist")
    sign_bundle(bundle, key)
    report = inspect_bundle(bundle, TrustPolicy(key.public))
    summary = report.to_json()
    assert summary["version"] == "1.2.0" and summary["verified"]
    assert summary["signers"][0]["fingerprint"] == key.fingerprint
    assert set(summary["size_by_role"]) == {"installer", "wheel", "deb", "terraform", "provider", "image",
                                            "agent", "playbooks", "docs", "sbom"}
    assert summary["sbom_counts"] == {"binary": 3, "deb": 1, "image": 1, "provider": 1, "wheel": 2}
    unverified = inspect_bundle(bundle, None).to_json()
    assert not unverified["verified"] and unverified["signature_count"] == 1


def test_diff_lists_added_removed_and_changed_components(tmp_path: Path) -> None:
    old = build_bundle(make_stage(tmp_path / "old"), tmp_path / "old", version="1.2.0")
    new_stage = make_stage(tmp_path / "new", deb_version="1.1-1", wheel_version="2.1.0")
    (new_stage / "images" / "base" / "index.json").unlink()
    from tests.support.bundles import tiny_deb

    tiny_deb(new_stage / "debs", "postgresql-15", "15.18-0")
    from bundles.build.sbom import write_sbom
    from tests.support.bundles import CREATED

    write_sbom(new_stage, product="appliance", version="1.3.0", created=CREATED, tool_version="test")
    new = build_bundle(new_stage, tmp_path / "new", version="1.3.0")
    changes = {(c.what, c.kind, c.name, c.old, c.new) for c in diff_bundles(inspect_bundle(old, None),
                                                                             inspect_bundle(new, None))}
    assert changes == {("changed", "deb", "nginx", "1.0-1", "1.1-1"),
                       ("changed", "wheel", "flask", "2.0.0", "2.1.0"),
                       ("added", "deb", "postgresql-15", None, "15.18-0"),
                       ("removed", "image", "base", "oci-layout", None)}


def test_cli_sign_verify_and_exit_codes(tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    generated = _cli("keys", "generate", "--name", "Test", "--email", "t@example.org", "--gnupghome", str(home),
                     "--export-public", str(tmp_path / "release.pub.asc"))
    assert generated.returncode == 0, generated.stderr
    fingerprint = generated.stdout.strip()
    bundle = build_bundle(make_stage(tmp_path), tmp_path / "dist")
    unsigned = _cli("verify", str(bundle), "--keyring", str(tmp_path / "release.pub.asc"))
    assert unsigned.returncode == 3 and "Bundle rejected (unsigned)" in unsigned.stderr
    assert _cli("sign", str(bundle), "--key", fingerprint, "--gnupghome", str(home)).returncode == 0
    ok = _cli("verify", str(bundle), "--keyring", str(tmp_path / "release.pub.asc"), "--output", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["signers"][0]["fingerprint"] == fingerprint
    shown = _cli("inspect", str(bundle), "--keyring", str(tmp_path / "release.pub.asc"))
    assert "verified" in shown.stdout and "1.2.0" in shown.stdout
    missing_keyring = _cli("verify", str(bundle), "--keyring", str(tmp_path / "nope.asc"))
    assert missing_keyring.returncode == 1 and "Cannot read the trusted keyring" in missing_keyring.stderr
    assert "Traceback" not in missing_keyring.stderr + unsigned.stderr


def _symlink(stage: Path) -> None:
    (stage / "docs" / "link").symlink_to("/etc/hostname")


def _stray_file(stage: Path) -> None:
    (stage / "stray.txt").write_text("x")


def _bad_name(stage: Path) -> None:
    (stage / "docs" / "notes with spaces.txt").write_text("x")


@pytest.mark.parametrize(("add", "problem"), [
    (_symlink, "not a regular file"),
    (_stray_file, "outside every bundle folder"),
    (_bad_name, "has a name a bundle cannot carry"),
], ids=["a symlink in the stage", "a file outside the bundle folders", "a file name with spaces"])
def test_the_assembler_refuses_stage_files_a_bundle_cannot_carry(tmp_path: Path, add: object, problem: str) -> None:
    stage = make_stage(tmp_path)
    add(stage)  # type: ignore[operator]
    with pytest.raises(BundleError, match=problem):
        build_bundle(stage, tmp_path / "dist")
    assert not (tmp_path / "dist" / "appliance-1.2.0.bundle").exists()


def test_dot_names_inside_content_are_bundled_but_stage_bookkeeping_is_not(tmp_path: Path) -> None:
    from bundles.build.assemble import stage_members

    stage = make_stage(tmp_path)
    (stage / "providers/registry/.well-known").mkdir(parents=True)
    (stage / "providers/registry/.well-known/terraform.json").write_text('{"providers.v1": "/v1/providers/"}\n')
    (stage / ".versions.json").write_text("{}\n")
    paths = {m.path for m in stage_members(stage)}
    assert "providers/registry/.well-known/terraform.json" in paths
    assert ".versions.json" not in paths


def test_the_sbom_lists_the_vendored_npm_packages_with_their_tarball_hashes(tmp_path: Path) -> None:
    from bundles.build.console_assets import PINS
    from bundles.build.sbom import write_sbom
    from bundles.layout import NPM_PACKAGES
    from tests.support.bundles import CREATED

    stage = make_stage(tmp_path)
    (stage / NPM_PACKAGES).write_text(json.dumps([{"name": p.name, "version": p.version, "sha256": p.sha256,
                                                   "tarball": p.tarball} for p in PINS]))
    document = write_sbom(stage, product="appliance", version="1.2.0", created=CREATED, tool_version="t").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(document) is None
    npm = {c["name"]: c for c in json.loads(document)["components"] if c["properties"][0]["value"] == "npm"}
    assert set(npm) == {"@xterm/xterm", "@xterm/addon-fit"}
    assert npm["@xterm/xterm"]["version"] == "6.0.0"
    assert npm["@xterm/xterm"]["purl"] == "pkg:npm/%40xterm/xterm@6.0.0"
    assert npm["@xterm/addon-fit"]["hashes"] == [{"alg": "SHA-256", "content": PINS[1].sha256}]
    assert npm["@xterm/xterm"]["properties"][1]["value"] == f"wheels/appliance-{appliance_version}-py3-none-any.whl"
