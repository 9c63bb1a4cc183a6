"""The product promise, end to end: a fresh Debian 12 with no network, one signed bundle, the
installer's commands, and a working appliance, every service under systemd with TLS.

One module-scoped host is installed once; each check below is one test, run in order, so a
later component (mirror, provisioner, registry, relay) adds its check as one more test that
takes `installed`. Uninstall runs last.

That host also gets the installs that must not happen or must recover, before the one every
check uses: a tampered bundle, a blocked preflight, a failure midway, then the rerun that
converges. Each is a full install's work on its own host, so they share this one
(docs/adr/0033-ci-time.md); the fixture records what each attempt did and the host looked like
after it, and a test of its own asserts on that record.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance import __version__ as checkout_version
from appliance.sdk.health import HealthReport
from appliance.sdk.runtime import LABEL_WORKSPACE
from bundles.support import check_manifest
from installer.support_bundle import journal_units
from operator_errors.redaction import encodings
from tests.e2e.appliance_host import BUNDLE, PASSWORD, REPO, VERSION, Release, health_problems, https, push_template
from tests.e2e.appliance_host import alongside as _alongside
from tests.e2e.appliance_host import explain as _explain
from tests.e2e.appliance_host import install as _install
from tests.e2e.appliance_host import job_failure as _job_failure
from tests.e2e.appliance_host import login as _login
from tests.e2e.appliance_host import prepare as _prepare
from tests.e2e.appliance_host import wait_job as _wait_job
from tests.support.agents import package_argv
from tests.support.nspawn import OfflineHost
from tests.support.nspawn import offline_host as boot_offline_host

# The first test also pays for building the bundle (minutes, more on a cold .cache/bundle) and
# installing it; every step below has its own timeout, so the default 300 s would only cut a build short.
pytestmark = pytest.mark.timeout(1500)


@dataclass(frozen=True)
class Attempt:
    """An install the fixture ran before the one that converged, and the host's state right after it."""
    result: subprocess.CompletedProcess[str]
    untouched: bool   # no /opt/appliance, no /etc/appliance, no postgresql-15 package
    log: str          # _explain's installer log and journal, for failure messages


@dataclass
class Installed:
    host: OfflineHost
    output: str
    seconds: float
    # The attempts before the install that converged (_installs).
    tampered: Attempt      # a bundle with three changed bytes in a wheel
    tampered_member: str   # the wheel they are in
    blocked: Attempt       # a squatter on port 443, no override
    midway: Attempt        # the same squatter, its preflight check overridden

    @property
    def setup_token(self) -> str:
        match = re.search(r"/setup\?token=(\S+)", self.output)
        assert match, self.output
        return match.group(1)


INSTALLER = "/root/installer/appliance-installer"
UNTOUCHED = "! test -e /opt/appliance && ! test -e /etc/appliance && ! dpkg -s postgresql-15 >/dev/null 2>&1"


def _attempt(host: OfflineHost, extra: str = "") -> Attempt:
    result, seconds = _install(host, extra)
    print(f"install attempt{' ' + extra if extra else ''}: exit {result.returncode} after {seconds:.0f}s")
    return Attempt(result, host.sh(UNTOUCHED).returncode == 0, _explain(host, result))


def _tampered(release: Release, folder: Path) -> tuple[Release, str]:
    """The release with three bytes of its flask wheel changed (the installer member left intact)."""
    import tarfile

    tampered = folder / BUNDLE
    shutil.copyfile(release.bundle, tampered)
    with tarfile.open(tampered) as tar:
        wheel = next(i for i in tar.getmembers() if i.name.startswith("wheels/flask-"))
    with tampered.open("r+b") as raw:
        raw.seek(wheel.offset_data + 100)
        raw.write(b"\x00\x01\x02")
    return Release(tampered, release.key, release.public_binary), wheel.name


def _installs(host: OfflineHost, release: Release, work: Path) -> Installed:
    """The installs that must change nothing or must recover, each on the host as the previous one left it,
    then the rerun that converges."""
    tampered_release, member = _tampered(release, work)
    _prepare(host, tampered_release)
    tampered = _attempt(host)
    _prepare(host, release)
    host.run("systemd-run", "--unit=squatter", "python3", "-m", "http.server", "443")
    time.sleep(1)
    blocked = _attempt(host)
    midway = _attempt(host, "--ignore-preflight ports")
    host.run("systemctl", "stop", "squatter")
    result, seconds = _install(host)
    assert result.returncode == 0, _explain(host, result)
    print(f"install time: {seconds:.0f}s (converging after the midway failure) for a "
          f"{release.bundle.stat().st_size / 1e6:.1f} MB bundle")
    return Installed(host, result.stdout + result.stderr, seconds, tampered, member, blocked, midway)


@pytest.fixture(scope="module")
def installed(release: Release, baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("installed")
    with boot_offline_host(baseline, work / "host") as host:
        host.delegate_cgroup_controllers()   # writable as on a real host: workspaces get CPU and memory limits
        # The installs leave a core idle for minutes: the checkout's agent executable, which the
        # integration tests run later (tests/support/agents.py's cache), is built on it meanwhile.
        with _alongside(package_argv(work / "checkout-agent"), cwd=REPO):
            installed = _installs(host, release, work)
        yield installed


# -- installs that must not happen, or must recover (on the same host, before the install that converged) --


def test_a_tampered_bundle_installs_nothing(installed: Installed) -> None:
    tampered = installed.tampered
    assert tampered.result.returncode == 3, tampered.log
    assert f"Bundle rejected (hash-mismatch): member {installed.tampered_member}" in tampered.result.stderr
    assert tampered.untouched, tampered.log


def test_a_failed_preflight_changes_nothing_and_a_midway_failure_converges_on_rerun(installed: Installed) -> None:
    blocked, midway = installed.blocked, installed.midway
    assert blocked.result.returncode == 1, blocked.log
    assert "ports" in blocked.result.stderr and "blocking check(s) failed" in blocked.result.stderr
    assert blocked.untouched, blocked.log

    assert midway.result.returncode == 1, midway.log
    assert "Playbooks:" in midway.result.stderr and "nginx" in midway.result.stderr, midway.log

    host = installed.host  # the rerun converged (the fixture asserts its exit code), with the squatter gone
    assert https(host, "GET", "/healthz") == (200, "OK")
    overrides = [json.loads(line) for line in host.read_text(
        "/var/lib/appliance/installer/preflight-overrides.jsonl").splitlines()]
    assert [o["check"] for o in overrides] == ["ports"]  # recorded even though that run failed later


# -- checks on the installed host, in order -----------------------------------------------------


def test_every_appliance_unit_is_active_and_hardened(installed: Installed) -> None:
    host = installed.host
    for unit in ("postgresql@15-main.service", "appliance-console.service", "appliance-gateway.service",
                 "appliance-relay.service", "nginx.service", "appliance-pki-renew.timer", "appliance-registry.service",
                 "appliance-runtime.service", "appliance-provisioner.service"):
        assert host.run("systemctl", "is-active", unit).stdout.strip() == "active", host.journal(unit)
    # Debian's own registry unit (anonymous, on :5000) never runs; podman's API socket neither.
    for unit in ("docker-registry.service", "podman.socket"):
        assert host.run("systemctl", "is-enabled", unit).stdout.strip() == "masked", unit
    for unit, user in (("appliance-console.service", "appliance"), ("appliance-gateway.service", "appliance"),
                       ("appliance-relay.service", "appliance"), ("appliance-registry.service", "appliance-registry"),
                       ("appliance-provisioner.service", "appliance-provisioner")):
        shown = host.run("systemctl", "show", unit, "-p", "User", "-p", "ProtectSystem", "-p", "NoNewPrivileges",
                         "-p", "CapabilityBoundingSet", "-p", "PrivateTmp", "-p", "ProtectHome").stdout
        # The provisioner keeps only what starts terraform's sandbox under a uid of its own.
        caps = "cap_kill cap_setgid cap_setuid" if unit == "appliance-provisioner.service" else ""
        assert {f"User={user}", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                "ProtectHome=yes"} <= set(shown.split()), (unit, shown)
        assert f"CapabilityBoundingSet={caps}\n" in shown, (unit, shown)
        owner = host.sh(f"pid=$(systemctl show -p MainPID --value {unit}); "
                        "awk '/^Uid:/ {print $2}' /proc/$pid/status").stdout.strip()
        assert owner == host.run("id", "-u", user).stdout.strip() != "0", unit


def test_the_provisioner_sees_only_its_folder_the_ca_and_the_release(installed: Installed) -> None:
    host = installed.host
    # What the daemon's own mount namespace shows (root looking in, so file modes hide nothing).
    view = host.sh("pid=$(systemctl show -p MainPID --value appliance-provisioner.service); "
                   "nsenter -t $pid -m sh -ec 'find /var/lib/appliance /etc/appliance "
                   "-not -path \"/var/lib/appliance/provisioner/*\" | sort; "
                   "test -x /usr/local/bin/terraform && test -d /opt/appliance/current/providers/mirror "
                   "&& echo release-readable'")
    assert view.returncode == 0, view.stdout + view.stderr
    assert view.stdout.split() == ["/etc/appliance", "/var/lib/appliance", "/var/lib/appliance/pki",
                                   "/var/lib/appliance/pki/ca-bundle.pem", "/var/lib/appliance/provisioner",
                                   "release-readable"], view.stdout
    modes = host.sh("stat -c '%U:%G %a' /var/lib/appliance/provisioner /etc/appliance/secrets/provisioner-psk")
    assert modes.stdout.splitlines() == ["appliance-provisioner:appliance-provisioner 711", "root:root 600"]
    login = host.run("getent", "passwd", "appliance-provisioner").stdout.strip().split(":")
    assert login[5:] == ["/var/lib/appliance/provisioner", "/usr/sbin/nologin"]
    config = host.read_text("/etc/appliance/appliance.toml")
    psk = host.read_text("/etc/appliance/secrets/provisioner-psk").strip()
    assert "provisioner_daemons = 0" in config and f'provisioner_psk = "{psk}"' in config and len(psk) >= 32


def test_the_console_answers_over_https_trusting_only_the_internal_ca(installed: Installed) -> None:
    assert https(installed.host, "GET", "/healthz") == (200, "OK")
    status, body = https(installed.host, "GET", "/healthz", cafile="")  # the system's CAs do not know ours
    assert status == 0 and "CERTIFICATE_VERIFY_FAILED" in body
    redirect = installed.host.run("python3", "-c", "import urllib.request as u; r = u.urlopen("
                                  "u.Request('http://appliance-host/api/v2/buildinfo'), timeout=10); print(r.url)")
    assert "CERTIFICATE_VERIFY_FAILED" in redirect.stderr  # port 80 only redirects to HTTPS


def test_the_installed_appliance_reports_the_release_version(installed: Installed) -> None:
    assert checkout_version != VERSION
    shown = installed.host.run("/opt/appliance/current/venv/bin/appliance", "--version")
    assert shown.stdout.strip() == f"appliance, version {VERSION}", shown.stdout + shown.stderr
    status, body = https(installed.host, "GET", "/api/v2/buildinfo")
    assert status == 200 and json.loads(body)["version"] == VERSION, body


def test_postgres_listens_only_on_its_socket(installed: Installed) -> None:
    listening = installed.host.run("python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 5432), 3)")
    assert "Connection refused" in listening.stderr


def test_first_user_setup_and_login_are_audited(installed: Installed) -> None:
    host = installed.host
    user = {"username": "admin", "email": "admin@example.org", "password": PASSWORD}
    assert https(host, "POST", "/api/v2/users/first", user)[0] == 403  # the setup link is required
    page = https(host, "GET", f"/setup?token={installed.setup_token}")  # what a browser does with the link
    assert page[0] == 200 and "Create the first user" in page[1]
    status, body = https(host, "POST", "/api/v2/users/first", {**user, "setup_token": installed.setup_token})
    assert status == 201, body
    status, body = https(host, "POST", "/api/v2/users/login", {"username": "admin", "password": PASSWORD})
    assert status == 201, body
    token = json.loads(body)["session_token"]
    status, body = https(host, "GET", "/api/v2/audit", token=token)
    rows = json.loads(body)["audit_logs"]
    assert {(r["action"], r["resource_type"]) for r in rows} >= {("create", "user"), ("login", "api_key")}
    assert all(r["ip"] == "127.0.0.1" for r in rows)  # nginx's X-Forwarded-For, trusted one hop
    logs = host.sh("cat /var/log/nginx/access.log; journalctl -u appliance-console --no-pager").stdout
    assert "/api/v2/users/login" in logs and installed.setup_token not in logs


def test_a_second_install_run_changes_nothing(installed: Installed) -> None:
    result, _ = _install(installed.host)
    assert result.returncode == 0, _explain(installed.host, result)
    assert "changed=0)" in result.stdout, result.stdout
    assert "First user:      already created" in result.stdout


def test_status_reports_version_units_certificates_and_verification(installed: Installed) -> None:
    result = installed.host.run("/root/installer/appliance-installer", "status", "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["installed_version"] == VERSION
    assert set(report["units"].values()) == {"active"}
    assert {c["name"] for c in report["certificates"]["certificates"]} == {"nginx", "registry", "registry-token"}
    assert report["last_verification"]["signers"][0]["user_id"].startswith("Release release")


def test_the_health_report_is_all_ok_after_install(installed: Installed) -> None:
    assert health_problems(installed.host) == []


TERRAFORM = """terraform {
  required_providers {
    hello = { source = "registry.terraform.io/test/hello", version = "1.0.0" }
    own   = { source = "appliance-host/test/hello", version = "1.0.0" }
  }
}
data "hello_greeting" "mirror" { name = "mirror" }
data "hello_greeting" "registry" {
  provider = own
  name     = "registry"
}
output "texts" { value = [data.hello_greeting.mirror.text, data.hello_greeting.registry.text] }
"""


def test_terraform_installs_providers_only_from_the_installed_mirror_and_registry(installed: Installed) -> None:
    host = installed.host
    host.sh("mkdir -p /root/tf")
    host.copy_in(_text_file(TERRAFORM), "/root/tf/main.tf")
    result = host.sh("cd /root/tf && export TF_CLI_CONFIG_FILE=/etc/appliance/terraform.rc "
                     "SSL_CERT_FILE=/var/lib/appliance/pki/ca-bundle.pem TF_IN_AUTOMATION=1 && "
                     "terraform init -input=false -no-color && terraform apply -auto-approve -no-color", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Installed appliance-host/test/hello v1.0.0 (self-signed" in result.stdout
    assert '"hello mirror from hello 1.0.0"' in result.stdout and '"hello registry from hello 1.0.0"' in result.stdout
    status, body = https(host, "GET", "/tf/mirror/registry.terraform.io/test/hello/index.json")
    assert (status, json.loads(body)) == (200, {"versions": {"1.0.0": {}}})


def _text_file(text: str) -> Path:
    import tempfile

    handle = tempfile.NamedTemporaryFile("w", suffix=".tf", delete=False)  # noqa: SIM115 -- copied in, then removed
    handle.write(text)
    handle.close()
    return Path(handle.name)


def test_a_template_pushed_on_the_host_imports_and_its_workspace_builds_stops_and_starts(
        installed: Installed, tmp_path: Path) -> None:
    host = installed.host
    status, body = https(host, "POST", "/api/v2/users/login", {"username": "admin", "password": PASSWORD})
    assert status == 201, body
    token = json.loads(body)["session_token"]
    version = push_template(host, token, "minimal", REPO / "examples/templates/minimal", tmp_path)
    assert {p["name"] for p in version["parameters"]} == {"greeting", "cpus"}

    status, body = https(host, "POST", "/api/v2/workspaces", {"template": "minimal", "name": "first"}, token)
    assert status == 201, body
    workspace = json.loads(body)
    queued = workspace["latest_build"]  # creating a workspace queues its first start
    for transition, expected in (("start", "running"), ("stop", "stopped"), ("start", "running")):
        if queued is None:
            status, body = https(host, "POST", f"/api/v2/workspaces/{workspace['id']}/builds",
                                 {"transition": transition}, token)
            assert status == 201, body
            queued = json.loads(body)
        build = _wait_job(host, f"/api/v2/workspacebuilds/{queued['id']}", token)
        assert (build["transition"], build["status"]) == (transition, expected), _job_failure(host, build, token)
        status, body = https(host, "GET", f"/api/v2/workspaces/{workspace['id']}", token=token)
        assert json.loads(body)["status"] == expected, body
        queued = None
    # A follow goes through nginx to the gateway (never a gunicorn worker) and ends with the build's status.
    status, body = https(host, "GET", f"/api/v2/workspacebuilds/{build['id']}/logs?follow=true", token=token)
    assert status == 200 and "event: log" in body, body[-2000:]
    assert 'event: end\ndata: {"status": "succeeded", "error": ""}' in body, body[-2000:]
    # The one daemon is the external unit (the console runs none): it reported the job over HTTPS.
    assert f"/api/v2/provisionerd/jobs/{build['job']['id']}/build-complete" in host.read_text(
        "/var/log/nginx/access.log")


REGISTRY = "127.0.0.1:3002"   # playbooks/site.yml's appliance_registry_address
BASE_IMAGE = "base/debian:12"   # playbooks/roles/registry's registry_images; podman-debian's image
# The runtime service's own containers.conf (runc, no ulimits): podman on the host reads its containers with it.
CONTAINERS_CONF = "/run/appliance-runtime/containers.conf"
REGISTRY_GET = """
import json, ssl, sys, urllib.request
url, token, accept = sys.argv[1:4]
headers = {"Accept": accept}
if token:
    headers["Authorization"] = "Bearer " + token
context = ssl.create_default_context(cafile="/var/lib/appliance/pki/ca-bundle.pem")
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context, timeout=30) as r:
        print(json.dumps({"status": r.status, "headers": dict(r.headers), "body": r.read().decode()}))
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code, "headers": dict(err.headers), "body": err.read().decode()}))
"""


def registry_get(host: OfflineHost, path: str, token: str = "",
                 accept: str = "application/vnd.oci.image.manifest.v1+json") -> dict[str, Any]:
    """A GET to the registry's own TLS port from inside the host, trusting only the internal CA."""
    result = host.run("python3", "-c", REGISTRY_GET, f"https://{REGISTRY}{path}", token, accept)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    answer["headers"] = {k.lower(): v for k, v in answer["headers"].items()}
    return answer


def test_the_registry_answers_over_tls_with_token_auth_and_holds_the_base_image(installed: Installed) -> None:
    started = time.monotonic()
    host = installed.host
    anonymous = registry_get(host, "/v2/")
    assert anonymous["status"] == 401, anonymous
    assert anonymous["headers"]["www-authenticate"].startswith(
        'Bearer realm="https://appliance-host/api/v2/registry/token",service="appliance-registry"'), anonymous
    repository, tag = BASE_IMAGE.split(":")
    status, body = https(host, "GET", f"/api/v2/registry/token?service=appliance-registry"
                                      f"&scope=repository:{repository}:pull", token=_login(host))
    assert status == 200, body
    token = json.loads(body)["token"]
    index = json.loads(host.read_text("/opt/appliance/current/images/debian-12/index.json"))
    manifest = registry_get(host, f"/v2/{repository}/manifests/{tag}", token, index["manifests"][0]["mediaType"])
    assert manifest["status"] == 200, manifest
    assert manifest["headers"]["docker-content-digest"] == index["manifests"][0]["digest"]
    assert registry_get(host, f"/v2/{repository}/manifests/{tag}")["status"] == 401
    # The registry's storage is its own; its process runs as its user and sees none of the database.
    modes = host.sh("stat -c '%U %a' /var/lib/appliance/registry/storage /var/lib/appliance/registry/config.yml")
    assert modes.stdout.split() == ["appliance-registry", "700", "root", "600"], modes.stdout
    print(f"registry checks: {time.monotonic() - started:.1f}s")


def _podman(host: OfflineHost, script: str) -> subprocess.CompletedProcess[str]:
    """podman on the host, reading the runtime service's containers (the same storage, runc)."""
    return host.sh(f"CONTAINERS_CONF={CONTAINERS_CONF} {script}", timeout=120)


def _workspace_containers(host: OfflineHost, workspace_id: str) -> list[dict[str, Any]]:
    listed = _podman(host, f"podman ps --all --format json --filter label={LABEL_WORKSPACE}={workspace_id}")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout or "[]"))


def _build(host: OfflineHost, workspace_id: str, transition: str, token: str) -> dict[str, Any]:
    status, body = https(host, "POST", f"/api/v2/workspaces/{workspace_id}/builds", {"transition": transition}, token)
    assert status == 201, body
    return _wait_job(host, f"/api/v2/workspacebuilds/{json.loads(body)['id']}", token)


def test_a_podman_debian_workspace_runs_from_the_internal_registry_and_keeps_its_home(
        installed: Installed, tmp_path: Path) -> None:
    phase = time.monotonic()
    host = installed.host
    token = _login(host)
    push_template(host, token, "podman-debian", REPO / "examples/templates/podman-debian", tmp_path)
    print(f"podman-debian import: {time.monotonic() - phase:.1f}s")

    phase = time.monotonic()
    status, body = https(host, "POST", "/api/v2/workspaces", {"template": "podman-debian", "name": "dev"}, token)
    assert status == 201, body
    workspace = json.loads(body)
    build = _wait_job(host, f"/api/v2/workspacebuilds/{workspace['latest_build']['id']}", token, timeout=600)
    assert build["status"] == "running", _job_failure(host, build, token) + host.journal("appliance-runtime.service")
    print(f"podman-debian first start (pull from the registry, run): {time.monotonic() - phase:.1f}s")
    [container] = _workspace_containers(host, workspace["id"])
    assert container["State"] == "running", container
    assert container["Image"].startswith(f"{REGISTRY}/"), container  # pulled from the internal registry only
    inspected = json.loads(_podman(host, f"podman inspect {container['Id']}").stdout)[0]
    [home] = [m for m in inspected["Mounts"] if m["Type"] == "volume"]
    wrote = _podman(host, f"podman exec {container['Id']} sh -c 'echo kept-across-stop > {home['Destination']}/proof'")
    assert wrote.returncode == 0, wrote.stderr
    _assert_reaches_the_appliance(host, container["Id"])

    phase = time.monotonic()
    stopped = _build(host, workspace["id"], "stop", token)
    assert stopped["status"] == "stopped", _job_failure(host, stopped, token)
    assert _workspace_containers(host, workspace["id"]) == []  # stop removes the container ...
    volumes = _podman(host, "podman volume ls --format '{{.Name}}'").stdout.split()
    assert home["Name"] in volumes  # ... and keeps the home volume
    started = _build(host, workspace["id"], "start", token)
    assert started["status"] == "running", _job_failure(host, started, token)
    [again] = _workspace_containers(host, workspace["id"])
    assert again["Id"] != container["Id"] and again["State"] == "running"
    proof = _podman(host, f"podman exec {again['Id']} cat {home['Destination']}/proof")
    assert proof.stdout.strip() == "kept-across-stop", proof.stdout + proof.stderr
    print(f"podman-debian stop + start: {time.monotonic() - phase:.1f}s")


APPLIANCE = "/opt/appliance/current/venv/bin/appliance"
CA_BUNDLE = "/var/lib/appliance/pki/ca-bundle.pem"
# `appliance ping` held open while the workspace stops, as a transient unit (its end is visible to systemctl).
PING_UNIT = "appliance-ping-probe.service"


def _workspace(host: OfflineHost, name: str, token: str) -> dict[str, Any]:
    status, body = https(host, "GET", f"/api/v2/workspaces?name={name}", token=token)
    assert status == 200, body
    [workspace] = json.loads(body)["workspaces"]
    return dict(workspace)


def _workspace_agent(host: OfflineHost, name: str, token: str) -> tuple[dict[str, Any], str]:
    """The workspace called `name` and the id of the one agent its latest build made."""
    workspace = _workspace(host, name, token)
    [agent] = [a for r in workspace["latest_build"]["resources"] for a in r["agents"]]
    return workspace, str(agent["id"])


def _wait_agent_ready(host: OfflineHost, workspace_id: str, agent_id: str, token: str,
                      timeout: float = 240) -> dict[str, Any]:
    """GET the agent until the relay saw it connect and its startup finished (status connected, lifecycle ready)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = https(host, "GET", f"/api/v2/workspaceagents/{agent_id}", token=token)
        assert status == 200, body
        agent: dict[str, Any] = json.loads(body)
        if (agent["status"], agent["lifecycle_state"]) == ("connected", "ready"):
            return agent
        if time.monotonic() > deadline:
            containers = _workspace_containers(host, workspace_id)
            inside = _podman(host, f"podman logs --tail 40 {containers[0]['Id']}") if containers else None
            pytest.fail(f"the agent is not connected and ready: {body}\n--- workspace ---\n"
                        f"{inside.stdout + inside.stderr if inside else 'no container'}\n--- relay ---\n"
                        f"{host.journal('appliance-relay.service')}")
        time.sleep(1)


def _relay_kinds(host: OfflineHost, workspace_id: str) -> list[str]:
    """The kinds of the relay keys the control plane admits for one workspace (the relay's admission table)."""
    result = host.run("runuser", "-u", "postgres", "--", "psql", "-d", "appliance", "-tA", "-v", f"ws={workspace_id}",
                      input="SELECT kind FROM relay_peers WHERE workspace_id = :'ws' ORDER BY kind;")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def _request_logged(address: str, method: str, path: str, status: str = "") -> str:
    """A pattern for nginx's access log line (a JSON event, role nginx's log_format) of one request."""
    pattern = f'"remote_addr":"{re.escape(address)}","method":"{method}","path":"{re.escape(path)}",'
    return pattern + (f'"protocol":"HTTP/1\\.1","status":"{status}"' if status else "")


def _wait_logged(host: OfflineHost, pattern: str, timeout: float = 10) -> None:
    """Wait for nginx's access log to show `pattern` (an upgraded request is logged when its connection closes)."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log := host.read_text("/var/log/nginx/access.log")):
        assert time.monotonic() < deadline, f"nginx never logged {pattern}:\n{log[-3000:]}"
        time.sleep(0.5)


def test_the_workspace_agent_connects_through_nginx_to_the_relay_and_ping_goes_only_through_it(
        installed: Installed) -> None:
    phase = time.monotonic()
    host = installed.host
    token = _login(host)
    workspace, agent_id = _workspace_agent(host, "dev", token)
    agent = _wait_agent_ready(host, workspace["id"], agent_id, token)
    assert agent["first_connected_at"] and agent["troubleshooting_hint"] == "", agent
    assert _relay_kinds(host, workspace["id"]) == ["agent"]
    print(f"agent connected and ready: {time.monotonic() - phase:.1f}s after the workspace started")

    # The relay's own view: appliance.toml and its key, none of the CA's files or the secrets.
    view = host.sh("pid=$(systemctl show -p MainPID --value appliance-relay.service); "
                   "nsenter -t $pid -m find /var/lib/appliance /etc/appliance | sort")
    assert view.stdout.split() == ["/etc/appliance", "/etc/appliance/appliance.toml", "/var/lib/appliance",
                                   "/var/lib/appliance/relay", "/var/lib/appliance/relay/relay-node.key"], view

    login = host.run(APPLIANCE, "login", "https://appliance-host", "--username", "admin", "--password", PASSWORD,
                     "--ca-file", CA_BUNDLE)
    assert login.returncode == 0, login.stdout + login.stderr
    ping = host.run(APPLIANCE, "ping", "dev", timeout=120)
    assert ping.returncode == 0, ping.stdout + ping.stderr + host.journal("appliance-relay.service")
    assert "via DERP relay, never direct" in ping.stdout, ping.stdout
    # The CLI dialled the relay at the access URL: nginx upgraded its /derp request (logged when it closed).
    _wait_logged(host, _request_logged("127.0.0.1", "GET", "/derp", "101"))

    # A stop closes the session at once: a ping still running ends within seconds of the stop being queued.
    held = host.run("systemd-run", f"--unit={PING_UNIT}", "--setenv=HOME=/root", APPLIANCE, "ping", "dev",
                    "--count", "10000")
    assert held.returncode == 0, held.stderr
    time.sleep(3)
    assert host.run("systemctl", "is-active", PING_UNIT).stdout.strip() == "active", host.journal(PING_UNIT)
    [container] = _workspace_containers(host, workspace["id"])
    address = json.loads(_podman(host, f"podman inspect {container['Id']}").stdout)[0]["NetworkSettings"]["IPAddress"]
    status, body = https(host, "POST", f"/api/v2/workspaces/{workspace['id']}/builds", {"transition": "stop"}, token)
    assert status == 201, body
    queued = time.monotonic()
    assert _relay_kinds(host, workspace["id"]) == []  # the agent's key (and the ping's) is gone with the stop
    while host.run("systemctl", "is-active", PING_UNIT).stdout.strip() == "active":
        assert time.monotonic() - queued < 15, host.journal(PING_UNIT)
        time.sleep(0.2)
    print(f"a running ping ended {time.monotonic() - queued:.1f}s after the stop was queued")
    ended = host.journal(PING_UNIT)
    stopped = _wait_job(host, f"/api/v2/workspacebuilds/{json.loads(body)['id']}", token)
    assert stopped["status"] == "stopped", _job_failure(host, stopped, token)
    # The agent had dialled /derp from inside its container, through nginx (logged once its connection closed).
    _wait_logged(host, _request_logged(address, "GET", "/derp", "101"))
    assert _relay_kinds(host, workspace["id"]) == [], ended
    status, body = https(host, "GET", f"/api/v2/workspaceagents/{agent_id}", token=token)
    assert status == 200 and json.loads(body)["status"] != "connected", body
    print(f"relay checks: {time.monotonic() - phase:.1f}s")


def test_appliance_ssh_reaches_the_workspace_through_nginx_and_the_relay(installed: Installed) -> None:
    # After the relay test above, which stopped the workspace: start it again, then SSH in as a developer would.
    phase = time.monotonic()
    host = installed.host
    token = _login(host)
    workspace = _workspace(host, "dev", token)
    if workspace["latest_build"]["transition"] != "start":
        status, body = https(host, "POST", f"/api/v2/workspaces/{workspace['id']}/builds", {"transition": "start"},
                             token)
        assert status == 201, body
        started = _wait_job(host, f"/api/v2/workspacebuilds/{json.loads(body)['id']}", token)
        assert started["status"] == "running", _job_failure(host, started, token)
    workspace, agent_id = _workspace_agent(host, "dev", token)
    _wait_agent_ready(host, workspace["id"], agent_id, token)
    login = host.run(APPLIANCE, "login", "https://appliance-host", "--username", "admin", "--password", PASSWORD,
                     "--ca-file", CA_BUNDLE)
    assert login.returncode == 0, login.stdout + login.stderr
    command = host.run(APPLIANCE, "ssh", "dev", "--", "echo ssh-$((6*7)) in $(hostname); exit 3", timeout=120)
    assert command.returncode == 3, command.stdout + command.stderr + host.journal("appliance-relay.service")
    assert command.stdout.startswith("ssh-42 in "), command.stdout
    # OpenSSH's side: --stdio relays the agent's own SSH banner (OpenSSH would speak SSH on from here).
    banner = host.sh(f"timeout 60 {APPLIANCE} ssh --stdio appliance.dev </dev/null | head -c 8")
    assert banner.stdout == "SSH-2.0-", banner.stdout + banner.stderr
    print(f"ssh checks: {time.monotonic() - phase:.1f}s")


def test_the_front_comes_up_whichever_of_nginx_and_the_runtime_service_starts_first(installed: Installed) -> None:
    # At boot the two units start in parallel: a runtime service that starts first must leave nginx its port.
    host = installed.host
    result = host.sh("systemctl stop nginx.service && systemctl restart appliance-runtime.service && "
                     "timeout 60 sh -c 'until [ -S /run/appliance-runtime/runtime.sock ]; do sleep 0.2; done' && "
                     "systemctl start nginx.service")
    assert result.returncode == 0, result.stdout + result.stderr + host.journal("nginx.service")
    assert https(host, "GET", "/healthz") == (200, "OK")


# From inside the workspace, as its init script does: the access URL by name, trusting only the
# CA bundle the script wrote (never the image's own trust store).
REACH = 'curl -fsS --max-time 20 --cacert "${TMPDIR:-/tmp}/appliance-ca.pem" https://appliance-host/healthz'
REACH_DIAGNOSTICS = "cat /etc/hosts /etc/resolv.conf; getent hosts appliance-host; curl -v --max-time 10 " \
                    '--cacert "${TMPDIR:-/tmp}/appliance-ca.pem" https://appliance-host/healthz'


def _assert_reaches_the_appliance(host: OfflineHost, container_id: str) -> None:
    reached = _podman(host, f"podman exec {container_id} sh -c {shlex.quote(REACH)}")
    if reached.returncode != 0:
        inside = _podman(host, f"podman exec {container_id} sh -c {shlex.quote(REACH_DIAGNOSTICS)}")
        outside = host.sh("ss -ltnp; ip -4 addr; iptables-save; cat /etc/hosts; grep access_url /etc/appliance/*.toml")
        pytest.fail(f"the workspace cannot reach the appliance: {reached.stdout}{reached.stderr}\n--- inside ---\n"
                    f"{inside.stdout}{inside.stderr}\n--- host ---\n{outside.stdout}{outside.stderr}\n"
                    f"{host.journal('appliance-runtime.service')}")
    assert reached.stdout.strip() == "OK", reached.stdout
    # The init script itself got there: its agent download, over TLS, from the container's own address.
    inspected = json.loads(_podman(host, f"podman inspect {container_id}").stdout)[0]
    address = inspected["NetworkSettings"]["IPAddress"]
    log = host.read_text("/var/log/nginx/access.log")
    assert re.search(_request_logged(address, "GET", "/bin/appliance-agent-linux-amd64"), log), log[-3000:]
    # Only the front: the registry's port answers on the host's loopback, never at the podman gateway.
    registry = _podman(host, f"podman exec {container_id} curl -sS --max-time 10 -o /dev/null "
                             f"https://appliance-host:{REGISTRY.rsplit(':', 1)[1]}/v2/")
    assert registry.returncode == 7, registry.stderr  # curl's "could not connect"


HOSTILE = r"""resource "terraform_data" "probe" {
  provisioner "local-exec" {
    command = <<-EOT
      echo "sandbox-uid=$(id -u)"
      cat /run/credentials/appliance-provisioner.service/psk /etc/appliance/secrets/provisioner-psk \
          /etc/appliance/appliance.toml 2>/dev/null && echo LEAK-secrets
      for f in /proc/*/environ; do tr '\0' '\n' < "$f" 2>/dev/null; done | grep -q PSK && echo LEAK-environ
      test -e /var/lib/appliance/pki && echo LEAK-appliance-data
      echo DONE
    EOT
  }
}
"""


@pytest.mark.security(finding=2)
def test_a_hostile_template_runs_in_the_sandbox_under_the_installed_units(installed: Installed, tmp_path: Path) -> None:
    from appliance.templates.archive import source_archive

    host = installed.host
    token = json.loads(https(host, "POST", "/api/v2/users/login", {"username": "admin", "password": PASSWORD})[1])[
        "session_token"]
    (tmp_path / "hostile").mkdir()
    (tmp_path / "hostile" / "main.tf").write_text(HOSTILE)
    archive = tmp_path / "hostile.tar"
    archive.write_bytes(source_archive(tmp_path / "hostile"))
    host.copy_in(archive, "/root/hostile.tar")
    status, body = https(host, "POST", "/api/v2/files", token=token, upload="/root/hostile.tar",
                         content_type="application/x-tar")
    assert status == 201, body
    assert https(host, "POST", "/api/v2/templates", {"name": "hostile"}, token)[0] == 201
    status, body = https(host, "POST", "/api/v2/templates/hostile/versions", {"file_hash": json.loads(body)["hash"]},
                         token)
    version = _wait_job(host, f"/api/v2/templates/hostile/versions/{json.loads(body)['id']}", token)
    assert version["job"]["status"] == "succeeded", _job_failure(host, version, token)
    status, body = https(host, "POST", "/api/v2/workspaces", {"template": "hostile", "name": "probe"}, token)
    assert status == 201, body
    build = _wait_job(host, f"/api/v2/workspacebuilds/{json.loads(body)['latest_build']['id']}", token)
    assert build["status"] == "running", _job_failure(host, build, token)
    logs = https(host, "GET", f"/api/v2/workspacebuilds/{build['id']}/logs", token=token)[1]
    assert "(local-exec): DONE" in logs, logs[-3000:]
    uid = re.search(r"\(local-exec\): sandbox-uid=(\d+)", logs)
    daemon_uid = host.run("id", "-u", "appliance-provisioner").stdout.strip()
    assert uid is not None and uid.group(1) not in ("0", daemon_uid), logs[-3000:]
    assert "(local-exec): LEAK-" not in logs, logs[-3000:]
    psk = host.read_text("/etc/appliance/secrets/provisioner-psk").strip()
    assert psk not in logs


def test_the_daily_backup_timer_is_active_and_its_service_takes_a_complete_backup(installed: Installed) -> None:
    host = installed.host
    assert host.run("systemctl", "is-active", "appliance-backup.timer").stdout.strip() == "active"
    started = host.run("systemctl", "start", "appliance-backup.service")   # oneshot: returns when it is done
    assert started.returncode == 0, host.journal("appliance-backup.service")
    listed = host.sh("ls -d /var/lib/appliance/backups/*/manifest.json")
    assert listed.returncode == 0, listed.stderr
    manifest = json.loads(host.read_text(listed.stdout.split()[-1]))
    assert manifest["reason"] == "scheduled" and manifest["version"] == VERSION, manifest
    assert "database" in {entry["kind"] for entry in manifest["files"]}, manifest["files"]
    # The hardened unit ran as root with only what pg_dump and tar need, and wrote only the backups folder.
    shown = host.run("systemctl", "show", "appliance-backup.service", "-p", "ProtectSystem",
                     "-p", "NoNewPrivileges").stdout
    assert {"ProtectSystem=strict", "NoNewPrivileges=yes"} <= set(shown.split()), shown


def test_the_host_support_bundle_is_made_with_the_console_stopped_and_holds_no_secret(
        installed: Installed, tmp_path: Path) -> None:
    host = installed.host
    assert host.run("systemctl", "stop", "appliance-console.service").returncode == 0
    try:
        made = host.run(INSTALLER, "support-bundle", "--yes", "--journal-mb", "2", "--output-file",
                        "/root/support.zip", timeout=600)
        shown = host.run(INSTALLER, "logs", "console", "--lines", "30").stdout
    finally:
        assert host.run("systemctl", "start", "appliance-console.service").returncode == 0
    assert made.returncode == 0, made.stdout + made.stderr
    assert "journal/appliance-console.service.log" in made.stderr  # the summary, shown before writing
    bundle = tmp_path / "support.zip"
    bundle.write_bytes(base64.b64decode(host.run("base64", "-w0", "/root/support.zip").stdout))
    names = check_manifest(bundle)
    assert {f"journal/{unit}.log" for unit in journal_units()} <= set(names), names
    with zipfile.ZipFile(bundle) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    # gunicorn's own log (its shutdown, just now) is a JSON event like the app's.
    assert b'"logger": "gunicorn.error"' in members["journal/appliance-console.service.log"]
    health = members["health.json"].decode()
    assert health.startswith("unavailable: ") or HealthReport.model_validate_json(health), health
    assert b"[REDACTED]" in members["appliance.toml"]
    for name in host.run("ls", "/etc/appliance/secrets").stdout.split():
        secret = host.read_text(f"/etc/appliance/secrets/{name}").strip()
        for form in encodings(secret):
            leaks = [member for member, data in members.items() if form.encode() in data]
            assert not leaks, f"{name} ({form[:4]}...) appears in {leaks}"
    # `logs` renders the console's JSON events as lines; none is left as raw JSON.
    assert shown.strip() and not any(line.startswith("{") for line in shown.splitlines()), shown


def test_uninstall_stops_everything_and_keeps_the_data(installed: Installed) -> None:
    host = installed.host
    result = host.run("/root/installer/appliance-installer", "uninstall", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    for unit in ("appliance-provisioner.service", "appliance-console.service", "appliance-gateway.service",
                 "appliance-relay.service", "nginx.service", "postgresql@15-main.service"):
        assert host.run("systemctl", "is-active", unit).stdout.strip() != "active"
    assert host.sh("test -d /var/lib/appliance/pki && test -d /var/lib/postgresql/15/main && "
                   "test -f /etc/appliance/appliance.toml && ! test -e /opt/appliance").returncode == 0
