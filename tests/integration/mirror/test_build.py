"""Building mirror trees: additive, byte-identical from the same inputs, untouched by a failed build;
and the `appliance mirror` commands an operator uses to check one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirror.build import build_mirror
from mirror.errors import MirrorError
from mirror.signing import SigningKey, signing_key
from tests.support.provider_zips import fake_provider_zip

RANDOM = "registry.terraform.io/hashicorp/random"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return signing_key(tmp_path_factory.mktemp("signing") / "gnupg")


def _snapshot(tree: Path) -> dict[str, str]:
    return {p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("*")) if p.is_file()}


def _inputs(root: Path) -> tuple[Path, Path]:
    fake_provider_zip(root / "mirror" / RANDOM, "random", "3.6.0")
    fake_provider_zip(root / "registry" / "appliance/appliance", "appliance", "0.1.0")
    return root / "mirror", root / "registry"


def _appliance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", "mirror", *args], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "SOURCE_DATE_EPOCH": "1780000000"})


def test_the_same_inputs_give_a_byte_identical_tree(tmp_path: Path, key: SigningKey,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1780000000")
    mirrored, registered = _inputs(tmp_path / "in")
    build_mirror(tmp_path / "one", [mirrored], [registered], key)
    build_mirror(tmp_path / "two", [mirrored], [registered], key)
    assert _snapshot(tmp_path / "one") == _snapshot(tmp_path / "two")
    assert (tmp_path / "one/registry/v1/providers/appliance/appliance/0.1.0/"
            "terraform-provider-appliance_0.1.0_SHA256SUMS.sig").exists()


def test_a_signature_made_in_the_epoch_second_is_dated_the_epoch(key: SigningKey,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """gpg does not freeze a faked time equal to the current second; a fresh key used at once hit that."""
    data = os.urandom(1 << 20) * 128  # long enough for gpg's run to cross into the next second
    while time.time() % 1 < 0.6:
        time.sleep(0.01)
    epoch = max(int(time.time()), key.created)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
    packets = subprocess.run(["gpg", "--list-packets"], input=key.sign(data), capture_output=True, check=True,
                             env={**os.environ, "GNUPGHOME": str(key.home)}).stdout.decode()
    assert f"created {epoch}," in packets


def test_rebuilding_adds_and_keeps_what_was_there(tmp_path: Path, key: SigningKey) -> None:
    mirrored, registered = _inputs(tmp_path / "in")
    build_mirror(tmp_path / "out", [mirrored], [registered], key)
    fake_provider_zip(tmp_path / "more" / RANDOM, "random", "3.7.0")
    result = build_mirror(tmp_path / "out", [tmp_path / "more"], [], key)
    assert result.added == 1
    index = json.loads((tmp_path / "out/mirror" / RANDOM / "index.json").read_text())
    assert list(index["versions"]) == ["3.6.0", "3.7.0"]
    assert (tmp_path / "out/registry/v1/providers/appliance/appliance/versions").exists()


def test_a_failed_build_leaves_the_previous_tree_untouched(tmp_path: Path, key: SigningKey) -> None:
    mirrored, registered = _inputs(tmp_path / "in")
    build_mirror(tmp_path / "out", [mirrored], [registered], key)
    before = _snapshot(tmp_path / "out")
    (tmp_path / "bad" / RANDOM).mkdir(parents=True)
    (tmp_path / "bad" / RANDOM / "terraform-provider-random_3.8.0_linux_amd64.zip").write_bytes(b"PK\x03\x04 broken")
    expected = r"terraform-provider-random_3\.8\.0_linux_amd64\.zip: it is not a readable zip"
    with pytest.raises(MirrorError, match=expected):
        build_mirror(tmp_path / "out", [tmp_path / "bad"], [], key)
    assert _snapshot(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "in", "out"]  # no half-built folder left


def test_a_released_version_cannot_change_contents(tmp_path: Path, key: SigningKey) -> None:
    mirrored, _ = _inputs(tmp_path / "in")
    build_mirror(tmp_path / "out", [mirrored], [], key)
    fake_provider_zip(tmp_path / "changed" / RANDOM, "random", "3.6.0", payload=b"#!/bin/sh\necho tampered\n")
    with pytest.raises(MirrorError, match="already in the mirror with different contents"):
        build_mirror(tmp_path / "out", [tmp_path / "changed"], [], key)


def test_cli_build_list_verify_and_diff(tmp_path: Path, key: SigningKey) -> None:
    mirrored, registered = _inputs(tmp_path / "in")
    built = _appliance("build", str(tmp_path / "old"), "--from", str(mirrored), "--registry", str(registered),
                       "--signing-home", str(key.home))
    assert built.returncode == 0, built.stderr
    listing = json.loads(_appliance("list", str(tmp_path / "old"), "--output", "json").stdout)
    assert {(e["source"], e["version"]) for e in listing} == {(RANDOM, "3.6.0"), ("(appliance)/appliance/appliance",
                                                                                  "0.1.0")}
    assert _appliance("verify", str(tmp_path / "old")).returncode == 0
    subprocess.run(["cp", "-a", str(tmp_path / "old"), str(tmp_path / "new")], check=True)
    fake_provider_zip(tmp_path / "more" / RANDOM, "random", "3.7.0")
    assert _appliance("build", str(tmp_path / "new"), "--from", str(tmp_path / "more")).returncode == 0
    changes = json.loads(_appliance("diff", str(tmp_path / "old"), str(tmp_path / "new"), "--output", "json").stdout)
    assert changes == [{"change": "added", "source": RANDOM, "version": "3.7.0", "platform": "linux_amd64"}]


@pytest.mark.parametrize(("tamper", "message"), [
    ("archive", "zh hash mismatch"),
    ("signature", "the signature does not verify"),
    ("missing", "the archive is missing"),
], ids=["a byte changed in an archive", "a SHA256SUMS signature replaced", "an archive deleted"])
def test_verify_names_every_mismatch(tmp_path: Path, key: SigningKey, tamper: str, message: str) -> None:
    mirrored, registered = _inputs(tmp_path / "in")
    build_mirror(tmp_path / "out", [mirrored], [registered], key)
    archive = tmp_path / "out/mirror" / RANDOM / "terraform-provider-random_3.6.0_linux_amd64.zip"
    sig = next((tmp_path / "out/registry").rglob("*.sig"))
    if tamper == "archive":
        data = bytearray(archive.read_bytes())
        data[40] ^= 0xFF
        archive.write_bytes(bytes(data))
    elif tamper == "signature":
        other = signing_key(tmp_path / "other-key")
        sig.write_bytes(other.sign(sig.with_suffix("").read_bytes()))
    else:
        archive.unlink()
    result = _appliance("verify", str(tmp_path / "out"))
    assert result.returncode == 1
    assert message in result.stderr


def test_coverage_reports_what_templates_need_and_the_mirror_lacks(tmp_path: Path, key: SigningKey) -> None:
    mirrored, registered = _inputs(tmp_path / "in")
    build_mirror(tmp_path / "out", [mirrored], [registered], key)
    template = tmp_path / "template"
    template.mkdir()
    (template / "main.tf").write_text('''terraform {
  required_providers {
    random    = { source = "hashicorp/random", version = "~> 3.6" }
    appliance = { source = "appliance.example.org/appliance/appliance", version = ">= 0.1.0" }
    null      = { source = "hashicorp/null", version = "3.2.0" }
  }
}
''')
    result = _appliance("coverage", str(tmp_path / "out"), str(template), "--appliance-host",
                        "appliance.example.org", "--output", "json")
    assert result.returncode == 1
    rows = {r["source"]: r["chosen"] for r in json.loads(result.stdout)}
    assert rows == {RANDOM: "3.6.0", "appliance.example.org/appliance/appliance": "0.1.0",
                    "registry.terraform.io/hashicorp/null": None}
    assert "1 of 3 provider requirement(s) cannot be satisfied" in result.stderr
    (template / "broken.tf").write_text("terraform {\n  required_providers {\n")
    broken = _appliance("coverage", str(tmp_path / "out"), str(template))
    assert broken.returncode == 1 and "broken.tf: the template does not parse" in broken.stderr
