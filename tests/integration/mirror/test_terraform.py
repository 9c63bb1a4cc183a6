"""The real terraform CLI installs providers from the appliance over HTTPS (its internal CA):
through the network mirror, through the registry protocol on the appliance's own host, and
with the provisioner's CLI configuration; and refuses a tampered archive or signature."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from appliance.app import create_app
from appliance.config import Address
from appliance.db.database import Database
from appliance.pki.ca import CertificateAuthority, IssueRequest
from appliance.server.tls import TlsListener
from mirror.build import build_mirror
from mirror.cliconfig import terraform_cli_config
from mirror.hashes import dirhash_h1
from mirror.signing import signing_key
from tests.support.postgres import free_port
from tests.support.server import make_config

MIRRORED = "registry.terraform.io/test/hello"


@dataclass
class Appliance:
    url: str
    host: str
    tree: Path
    ca_bundle: Path


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, shared_conninfo: str,
              hello_provider_zip: Path) -> Iterator[Appliance]:
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH; these tests run the real terraform CLI")
    work = tmp_path_factory.mktemp("mirror-e2e")
    for folder in (work / "src" / MIRRORED, work / "registry-src/test/hello"):
        folder.mkdir(parents=True)
        shutil.copy(hello_provider_zip, folder)
    build_mirror(work / "tree", [work / "src"], [work / "registry-src"], signing_key(work / "signing"))
    ca = CertificateAuthority(work / "pki")
    ca.init(b"terraform-test-passphrase")
    ca.issue(IssueRequest("web", ("localhost",), ("127.0.0.1",)))
    port = free_port()
    config = make_config(port=port, postgres_url=shared_conninfo, access_url=f"https://localhost:{port}",
                         mirror_dir=work / "tree")
    db = Database(shared_conninfo)
    listener = TlsListener(Address("127.0.0.1", port), create_app(config, db), ca.layout.live_fullchain("web"),
                           ca.layout.live_key("web"))
    listener.start()
    try:
        yield Appliance(f"https://localhost:{port}", f"localhost:{port}", work / "tree", ca.layout.trust_bundle)
    finally:
        listener.stop()
        db.close()


def terraform(workdir: Path, appliance: Appliance, cli_config: str, main_tf: str,
              *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "main.tf").write_text(main_tf)
    (workdir / "cli.tfrc").write_text(cli_config)
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(workdir / "cli.tfrc"), "SSL_CERT_FILE": str(appliance.ca_bundle),
           "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_PLUGIN_CACHE_DIR": ""}
    return [subprocess.run(["terraform", *command, "-no-color"], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=300, check=False) for command in commands]


def template(providers: dict[str, str], data: str) -> str:
    required = "\n".join(f'    {name} = {{ source = "{source}", version = "1.0.0" }}'
                         for name, source in providers.items())
    return f"terraform {{\n  required_providers {{\n{required}\n  }}\n}}\n{data}"


INIT, APPLY = ["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]
GREETING = 'data "hello_greeting" "g" { name = "appliance" }\noutput "text" { value = data.hello_greeting.g.text }\n'


def _lock_hashes(workdir: Path) -> set[str]:
    return set(re.findall(r'"((?:h1|zh):[^"]+)"', (workdir / ".terraform.lock.hcl").read_text()))


def test_terraform_installs_and_applies_through_the_network_mirror(appliance: Appliance, tmp_path: Path) -> None:
    cli = f'provider_installation {{\n  network_mirror {{ url = "{appliance.url}/tf/mirror/" }}\n}}\n'
    init, apply = terraform(tmp_path, appliance, cli, template({"hello": MIRRORED}, GREETING), INIT, APPLY)
    assert init.returncode == 0, init.stdout + init.stderr
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert 'text = "hello appliance from hello 1.0.0"' in apply.stdout
    published = json.loads((appliance.tree / "mirror" / MIRRORED / "1.0.0.json").read_text())
    hashes = set(published["archives"]["linux_amd64"]["hashes"])
    # Golden h1: terraform computed its own from the unpacked package, and it equals ours.
    assert _lock_hashes(tmp_path) <= hashes
    archive = appliance.tree / "mirror" / MIRRORED / published["archives"]["linux_amd64"]["url"]
    assert dirhash_h1(archive) in _lock_hashes(tmp_path)


def test_the_provisioner_config_takes_mirror_and_registry_providers_only_from_the_appliance(
        appliance: Appliance, tmp_path: Path) -> None:
    own = f"{appliance.host}/test/hello"
    data = GREETING + 'data "hello_greeting" "own" {\n  provider = own\n  name = "registry"\n}\n' \
                      'output "own" { value = data.hello_greeting.own.text }\n'
    init, apply = terraform(tmp_path, appliance, terraform_cli_config(appliance.url),
                            template({"hello": MIRRORED, "own": own}, data), INIT, APPLY)
    assert init.returncode == 0, init.stdout + init.stderr
    assert re.search(rf"Installed {re.escape(own)} v1\.0\.0 \(self-signed, key ID [0-9A-F]{{16}}\)", init.stdout)
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert 'own = "hello registry from hello 1.0.0"' in apply.stdout


def test_a_provider_the_appliance_lacks_is_not_fetched_from_anywhere_else(appliance: Appliance,
                                                                          tmp_path: Path) -> None:
    main = template({"random": "hashicorp/random"}, "")
    [init] = terraform(tmp_path, appliance, terraform_cli_config(appliance.url), main, INIT)
    assert init.returncode != 0
    assert "registry.terraform.io/hashicorp/random was not\nfound in any of the search locations" in init.stderr
    locations = [line.strip() for line in init.stderr.splitlines() if line.startswith("  - ")]
    assert locations == [f"- provider mirror at {appliance.url}/tf/mirror/"]  # the appliance, and nothing else


def _flipped(path: Path) -> bytes:
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return original


def test_a_flipped_byte_in_a_served_archive_fails_init_with_a_checksum_error(appliance: Appliance,
                                                                             tmp_path: Path) -> None:
    archive = next((appliance.tree / "mirror" / MIRRORED).glob("*.zip"))
    original = _flipped(archive)
    try:
        cli = f'provider_installation {{\n  network_mirror {{ url = "{appliance.url}/tf/mirror/" }}\n}}\n'
        [init] = terraform(tmp_path, appliance, cli, template({"hello": MIRRORED}, GREETING), INIT)
    finally:
        archive.write_bytes(original)
    assert init.returncode != 0
    assert "checksum" in init.stderr.lower(), init.stderr


def test_a_wrong_shasums_signature_fails_init(appliance: Appliance, tmp_path: Path) -> None:
    signature = next((appliance.tree / "registry").rglob("*_SHA256SUMS.sig"))
    original = signature.read_bytes()
    signature.write_bytes(signing_key(tmp_path / "impostor").sign(signature.with_suffix("").read_bytes()))
    try:
        [init] = terraform(tmp_path / "work", appliance, terraform_cli_config(appliance.url),
                           template({"own": f"{appliance.host}/test/hello"}, ""), INIT)
    finally:
        signature.write_bytes(original)
    assert init.returncode != 0
    assert "signature" in init.stderr.lower() or "authenticate" in init.stderr.lower(), init.stderr


@pytest.mark.parametrize(("path", "content_type"), [
    ("/.well-known/terraform.json", "application/json"),
    (f"/tf/mirror/{MIRRORED}/index.json", "application/json"),
    ("/v1/providers/test/hello/versions", "application/json"),
    ("/v1/providers/test/hello/1.0.0/download/linux/amd64", "application/json"),
    (f"/tf/mirror/{MIRRORED}/terraform-provider-hello_1.0.0_linux_amd64.zip", "application/zip"),
], ids=["discovery", "mirror index", "registry versions", "registry download", "archive"])
def test_documents_are_served_with_the_content_types_terraform_requires(appliance: Appliance, path: str,
                                                                       content_type: str) -> None:
    response = requests.get(appliance.url + path, verify=str(appliance.ca_bundle), timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type


def test_unknown_mirror_paths_are_404_json(appliance: Appliance) -> None:
    for path in ("/tf/mirror/nope/index.json", "/v1/providers/x/y/versions", "/.well-known/nothing.json"):
        response = requests.get(appliance.url + path, verify=str(appliance.ca_bundle), timeout=30)
        assert response.status_code == 404 and response.headers["Content-Type"] == "application/json"
