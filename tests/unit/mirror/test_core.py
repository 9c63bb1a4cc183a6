"""The mirror's pure core: hashes, archive checks, documents, constraints, URL mapping."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import semver

from mirror.archive import parse_archive, scan_packed_tree
from mirror.cliconfig import registry_host, terraform_cli_config
from mirror.constraints import ConstraintError, parse_constraint, satisfying
from mirror.documents import mirror_documents, registry_documents
from mirror.errors import MirrorError
from mirror.hashes import dirhash_h1, zip_hash
from mirror.serve import resolve
from tests.support.provider_zips import fake_provider_zip

SOURCE = "registry.terraform.io/hashicorp/random"


def _tree(tmp_path: Path, version: str = "3.6.0", **kwargs: object) -> Path:
    return fake_provider_zip(tmp_path / "in" / SOURCE, "random", version, **kwargs)  # type: ignore[arg-type]


def test_h1_depends_on_contents_not_on_zip_bytes(tmp_path: Path) -> None:
    first = _tree(tmp_path)
    second = tmp_path / "rezipped.zip"
    with zipfile.ZipFile(first) as source, zipfile.ZipFile(second, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert dirhash_h1(first) == dirhash_h1(second)
    assert zip_hash(first) != zip_hash(second)
    assert dirhash_h1(first).startswith("h1:") and len(zip_hash(first)) == len("zh:") + 64


def test_a_valid_package_is_read_with_its_source_and_hashes(tmp_path: Path) -> None:
    _tree(tmp_path)
    [archive] = scan_packed_tree(tmp_path / "in")
    assert (archive.source, archive.version, archive.platform) == (SOURCE, "3.6.0", "linux_amd64")
    assert archive.h1 == dirhash_h1(archive.path)


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p.write_bytes(b"not a zip at all"), "not a readable zip"),
    (lambda p: p.write_bytes(_valid_bytes(p)[:200]), "not a readable zip"),
    (lambda p: _rezip(p, ["terraform-provider-random_v3.6.0", "terraform-provider-other_v1.0.0"]), "exactly one"),
    (lambda p: _rezip(p, ["README.md"]), "found none"),
    (lambda p: _rezip(p, ["terraform-provider-random_v9.9.9"]), "not the executable for random v3.6.0"),
], ids=["not a zip", "truncated", "two executables", "no executable", "contents of another version"])
def test_broken_packages_are_refused_naming_the_file(tmp_path: Path, make: object, problem: str) -> None:
    path = _tree(tmp_path)
    make(path)  # type: ignore[operator]
    with pytest.raises(MirrorError, match=problem) as caught:
        scan_packed_tree(tmp_path / "in")
    assert str(path) in caught.value.message


def _valid_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _rezip(path: Path, names: list[str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")


def test_a_name_not_matching_its_folder_or_not_semver_is_refused(tmp_path: Path) -> None:
    wrong_folder = fake_provider_zip(tmp_path / "a" / "registry.terraform.io/hashicorp/null", "random", "3.6.0")
    with pytest.raises(MirrorError, match="sits in the folder for 'null'"):
        parse_archive(wrong_folder, "registry.terraform.io", "hashicorp", "null")
    not_semver = fake_provider_zip(tmp_path / "b", "random", "3.6")
    with pytest.raises(MirrorError, match="not SemVer"):
        parse_archive(not_semver, "registry.terraform.io", "hashicorp", "random")
    fake_provider_zip(tmp_path / "c", "random", "3.6.0")
    with pytest.raises(MirrorError, match="HOSTNAME/NAMESPACE/TYPE"):
        scan_packed_tree(tmp_path / "c")


def test_mirror_documents_follow_the_network_mirror_protocol(tmp_path: Path) -> None:
    for version in ("3.6.0", "3.10.0"):
        fake_provider_zip(tmp_path / "in" / SOURCE, "random", version)
    fake_provider_zip(tmp_path / "in" / SOURCE, "random", "3.6.0", platform="darwin_arm64")
    docs = mirror_documents(scan_packed_tree(tmp_path / "in"))
    assert json.loads(docs[f"{SOURCE}/index.json"]) == {"versions": {"3.6.0": {}, "3.10.0": {}}}
    archives = json.loads(docs[f"{SOURCE}/3.6.0.json"])["archives"]
    assert set(archives) == {"linux_amd64", "darwin_arm64"}
    assert archives["linux_amd64"]["url"] == "terraform-provider-random_3.6.0_linux_amd64.zip"
    assert [h.split(":")[0] for h in archives["linux_amd64"]["hashes"]] == ["h1", "zh"]


def test_registry_documents_use_relative_urls_and_list_signing_keys(tmp_path: Path) -> None:
    fake_provider_zip(tmp_path / "in" / "appliance.local/acme/tools", "tools", "1.0.0")
    docs = registry_documents(scan_packed_tree(tmp_path / "in"), "ABCDEF0123456789", "-----BEGIN PGP...")
    assert json.loads(docs[".well-known/terraform.json"]) == {"providers.v1": "/v1/providers/"}
    versions = json.loads(docs["v1/providers/acme/tools/versions"])["versions"]
    assert versions == [{"version": "1.0.0", "protocols": ["6.0"], "platforms": [{"os": "linux", "arch": "amd64"}]}]
    download = json.loads(docs["v1/providers/acme/tools/1.0.0/download/linux/amd64"])
    assert download["download_url"] == "../../terraform-provider-tools_1.0.0_linux_amd64.zip"
    assert download["shasums_signature_url"] == "../../terraform-provider-tools_1.0.0_SHA256SUMS.sig"
    assert download["signing_keys"]["gpg_public_keys"][0]["key_id"] == "ABCDEF0123456789"
    sums = docs["v1/providers/acme/tools/1.0.0/terraform-provider-tools_1.0.0_SHA256SUMS"].decode()
    assert sums == f"{download['shasum']}  terraform-provider-tools_1.0.0_linux_amd64.zip\n"


@pytest.mark.parametrize(("constraint", "expected"), [
    ("", ["1.0.0", "1.2.5", "1.3.0", "2.0.0"]),
    ("1.2.5", ["1.2.5"]),
    ("= 1.2.5", ["1.2.5"]),
    ("!= 1.2.5", ["1.0.0", "1.3.0", "2.0.0"]),
    (">= 1.2, < 2.0", ["1.2.5", "1.3.0"]),
    ("~> 1.2", ["1.2.5", "1.3.0"]),
    ("~> 1.2.0", ["1.2.5"]),
    ("~> 1", ["1.0.0", "1.2.5", "1.3.0"]),
    ("> 2.0.0", []),
], ids=["any", "bare exact", "exact", "not", "range", "pessimistic minor", "pessimistic patch", "pessimistic major",
        "nothing"])
def test_terraform_version_constraints(constraint: str, expected: list[str]) -> None:
    assert satisfying(constraint, ["1.0.0", "1.2.5", "1.3.0", "2.0.0", "2.1.0-beta.1"]) == expected


def test_prereleases_are_chosen_only_when_named_and_bad_constraints_are_errors() -> None:
    assert satisfying("2.1.0-beta.1", ["2.1.0-beta.1"]) == ["2.1.0-beta.1"]
    with pytest.raises(ConstraintError, match="'about 2' is not a Terraform version constraint"):
        parse_constraint("about 2")(semver.Version.parse("2.0.0"))


def test_the_cli_config_allows_only_the_appliance(tmp_path: Path) -> None:
    text = terraform_cli_config("https://appliance.example.org")
    assert 'url     = "https://appliance.example.org/tf/mirror/"' in text
    assert 'include = ["appliance.example.org/*/*"]' in text and 'exclude = ["appliance.example.org/*/*"]' in text
    assert text.count("direct") == 1
    assert registry_host("https://Appliance.example.org:8443/") == "appliance.example.org:8443"


def test_urls_map_to_files_with_terraform_content_types(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "mirror/h/n/t").mkdir(parents=True)
    (tree / "mirror/h/n/t/index.json").write_text("{}")
    (tree / "registry/v1/providers/n/t/1.0.0/download/linux").mkdir(parents=True)
    (tree / "registry/v1/providers/n/t/1.0.0/download/linux/amd64").write_text("{}")
    (tree / "registry/.well-known").mkdir(parents=True)
    (tree / "registry/.well-known/terraform.json").write_text("{}")
    assert resolve(tree, "/tf/mirror/h/n/t/index.json") == (tree / "mirror/h/n/t/index.json", "application/json")
    found = resolve(tree, "/v1/providers/n/t/1.0.0/download/linux/amd64")
    assert found is not None and found[1] == "application/json"
    assert resolve(tree, "/.well-known/terraform.json") is not None
    for escape in ("/tf/mirror/../registry/.well-known/terraform.json", "/tf/mirror/h/n/t/missing.json", "/etc/passwd"):
        assert resolve(tree, escape) is None
