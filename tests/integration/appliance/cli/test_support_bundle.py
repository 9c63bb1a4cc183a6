"""`appliance support-bundle` against a live server with a real build and a real agent: what it holds, that every
secret the appliance knows stays out of it (planted at test time in config, environment, logs, job logs and the
database), what a member gets, and a full disk."""

from __future__ import annotations

import os
import secrets
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from psycopg.conninfo import conninfo_to_dict

from appliance.pki.ca import CertificateAuthority
from appliance.pki.passphrase import ENV_VAR as PKI_PASSPHRASE_ENV
from appliance.registry.tokens import SERVICE, ensure_signing_certificate
from appliance.sdk.health import HealthReport
from bundles.support import UNAVAILABLE, check_manifest
from operator_errors.redaction import encodings
from tests.support.agents import agent_log, agent_process, agent_workspace, wait_agent
from tests.support.api import Api
from tests.support.cli import COMMAND, cli_env, run_cli
from tests.support.postgres import create_database, drop_database
from tests.support.server import LiveServer, live_server

pytestmark = pytest.mark.integration
MARKER = "support-bundle-marker"


@dataclass
class Site:
    server: LiveServer
    planted: dict[str, str] = field(default_factory=dict)  # what each secret is -> its value


@dataclass
class Collected:
    owner: Api
    member: Api
    result: subprocess.CompletedProcess[str]
    files: dict[str, bytes]
    names: list[str]
    raw_agent_log: list[str]


@pytest.fixture(scope="module")
def site(admin_conninfo: str, template_db: str, appliance_mirror: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A server whose config, environment and CA hold secrets made now: the PSK, the CA key's passphrase, and the
    database URL's password (the test cluster's own)."""
    conninfo = create_database(admin_conninfo, "support_bundle", template=template_db)
    work = tmp_path_factory.mktemp("support-site")
    passphrase, psk = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    ca = CertificateAuthority(work / "pki")
    ca.init(passphrase.encode(), store_passphrase=True)
    ensure_signing_certificate(ca)
    planted = {"provisioner psk": psk, "CA key passphrase": passphrase, "database URL": conninfo,
               "database password": str(conninfo_to_dict(conninfo)["password"])}
    with pytest.MonkeyPatch.context() as env:
        env.setenv(PKI_PASSPHRASE_ENV, passphrase)  # as an installed unit's environment may carry it
        with live_server(conninfo, mirror_dir=appliance_mirror, pki_dir=work / "pki", provisioner_daemons=1,
                         provisioner_dir=work / "provisioner", provisioner_psk=psk,
                         provisioner_heartbeat_timeout=timedelta(seconds=10)) as live:
            yield Site(live, planted)
    drop_database(admin_conninfo, "support_bundle")


def _script(site: Site, owner_session: str) -> str:
    """A startup script that puts every planted secret in the agent's log (and the build's parameters), as a
    careless template would: a header, an environment, a config line, a URL."""
    p = site.planted
    return "; ".join([
        f"echo {MARKER}", f"echo {owner_session}", f"echo provisioner_psk={p['provisioner psk']}",
        f"echo PGPASSWORD={p['database password']}", f"echo pki_passphrase={p['CA key passphrase']}",
        f"echo postgresql://appliance:{p['database password']}@db/appliance",
        f"echo --password={p['owner password']}", f"echo docker login --password={p['API token']}",
        f"echo Authorization: Bearer {p['registry token']}", f"echo Cookie: appliance_session={p['session cookie']}",
    ])


@pytest.fixture(scope="module")
def collected(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Collected:
    url = site.server.url
    password = secrets.token_urlsafe(18)
    anonymous = Api(url)
    anonymous.create_first_user("owner", password=password)
    owner = anonymous.as_user(anonymous.login("owner", password))
    made = owner.post("/api/v2/users/me/keys/tokens", json={"token_name": "support"})
    assert made.status_code == 201, made.text
    registry = requests.get(url + "/api/v2/registry/token", params={"service": SERVICE, "scope": "repository:a/b:pull"},
                            auth=("owner", made.json()["key"]), timeout=30)
    assert registry.status_code == 200, registry.text
    site.planted |= {"owner password": password, "session token": owner.token or "", "API token": made.json()["key"],
                     "registry token": registry.json()["token"], "session cookie": anonymous.login("owner", password)}
    owner.create_user(username="member")
    member = anonymous.as_user(anonymous.login("member"))
    ws = agent_workspace(owner, "support", script=_script(site, owner.token or ""))
    site.planted["agent token"] = ws.token
    home = tmp_path_factory.mktemp("support-agent")
    with agent_process(url, ws.token, home):
        wait_agent(owner, ws.agent_id, lambda a: a["lifecycle_state"] == "ready", home=home)
    out = tmp_path_factory.mktemp("support-out") / "bundle.zip"
    result = run_cli(url, owner, "support-bundle", "--workspace", "support", "--yes", "--output-file", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(out) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return Collected(owner, member, result, files, check_manifest(out), agent_log(owner, ws.agent_id))


def test_the_bundle_holds_the_deployment_and_the_workspaces_build_and_agent_logs(collected: Collected) -> None:
    names = collected.names
    assert {"buildinfo.json", "health.json", "releases.json", "relay.json", "registry-images.json",
            "workspace/workspace.json", "workspace/builds.json", "workspace/build-1.log"} <= set(names), names
    assert b'"relays"' in collected.files["relay.json"] and b'"version"' in collected.files["buildinfo.json"]
    health = collected.files["health.json"]
    assert health.startswith(UNAVAILABLE.encode()) or HealthReport.model_validate_json(health)  # the route, or why not
    assert b"Apply complete!" in collected.files["workspace/build-1.log"]
    [agent] = [n for n in names if n.startswith("workspace/agent-main-") and n.endswith(".log")]
    assert MARKER.encode() in collected.files[agent]
    # The summary came first, naming each file with its size.
    assert "workspace/build-1.log" in collected.result.stderr and "kB" in collected.result.stderr
    assert collected.result.stdout.startswith("Wrote ")


def test_no_planted_secret_appears_in_any_file_in_any_form(site: Site, collected: Collected) -> None:
    # The plant took: the agent's log, as the API serves it, holds the secrets in the clear.
    assert site.planted["provisioner psk"] in "\n".join(collected.raw_agent_log)
    assert len(site.planted) == 10
    for what, value in site.planted.items():
        for form in encodings(value):
            leaks = [name for name, data in collected.files.items() if form.encode() in data]
            assert not leaks, f"the {what} appears ({form[:6]}...) in {leaks}"


def test_a_member_gets_their_view_and_the_deployment_parts_say_why_they_are_missing(
        collected: Collected, site: Site, tmp_path: Path) -> None:
    out = tmp_path / "member.zip"
    result = run_cli(site.server.url, collected.member, "support-bundle", "--yes", "--output-file", str(out))
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        relay = archive.read("relay.json").decode()
        assert b'"username": "member"' in archive.read("me.json")
    assert relay.startswith(UNAVAILABLE) and "HTTP 403" in relay, relay


def test_without_a_terminal_it_asks_for_yes_and_writes_nothing(collected: Collected, site: Site,
                                                               tmp_path: Path) -> None:
    result = subprocess.run([*COMMAND, "support-bundle", "--output-file", str(tmp_path / "b.zip")],
                            capture_output=True, text=True, env=cli_env(site.server.url, collected.owner),
                            stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert result.returncode == 1 and "Pass --yes" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_gives_a_clear_error_and_leaves_no_partial_zip(collected: Collected, site: Site,
                                                                   tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        filler = disk / "filler"
        with filler.open("wb") as out:  # leave a few kB: enough to start the zip, not to finish it
            out.write(os.urandom((1 << 20) - 8192))
        result = run_cli(site.server.url, collected.owner, "support-bundle", "--workspace", "support", "--yes",
                         "--output-file", str(disk / "bundle.zip"))
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"the disk holding {disk} is full" in result.stderr and "--output-file" in result.stderr
        assert "Traceback" not in result.stderr
        assert [p.name for p in disk.iterdir()] == ["filler"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)

