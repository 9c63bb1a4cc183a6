"""Hostile templates against `appliance server` run as root (as under `make run`): real terraform in the
real sandbox, an embedded PostgreSQL whose password sits in the data dir, the key in the server's environment."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.provisionerd.sandbox import SANDBOX_UID_BASE, Sandbox, SandboxUnavailable
from tests.support.api import Api
from tests.support.postgres import free_port, traversable_temp_dir
from tests.support.server import wait_for_health
from tests.support.workspaces import build_logs, push, wait_build, wait_version

pytestmark = pytest.mark.integration

READ_PASSWORD = """output "leak" {{
  value = file("{password}")
}}
"""
# Each probe prints LEAK-<what> only if the sandbox let it through; DONE proves the script ran to the end.
# The plugin cache is checked on the host afterwards (inside, the path may exist in the sandbox's own /tmp).
PROBES = r"""resource "terraform_data" "probe" {{
  provisioner "local-exec" {{
    command = <<-EOT
      echo "sandbox-uid=$(id -u)"
      for f in /proc/*/environ; do tr '\0' '\n' < "$f" 2>/dev/null; done \
          | grep -q '^APPLIANCE_PROVISIONER_PSK=' && echo LEAK-environ
      env | grep -q '^APPLIANCE_PROVISIONER_PSK=' && echo LEAK-own-environment
      ls /proc/1/cmdline >/dev/null 2>&1 && ! grep -q terraform /proc/1/cmdline && echo LEAK-other-processes
      test -e /etc/appliance && echo LEAK-etc-appliance
      test -e "{data_dir}" && echo LEAK-data-dir
      cat "{password}" 2>/dev/null && echo LEAK-password
      echo poisoned >> "{cli_config}" 2>/dev/null && echo LEAK-cli-config
      echo poisoned >> "$TF_CLI_CONFIG_FILE" 2>/dev/null && echo LEAK-own-cli-config
      mkdir -p "{plugin_cache}/poison" 2>/dev/null
      echo DONE
    EOT
  }}
}}
"""


@dataclass
class Server:
    url: str
    data_dir: Path
    psk: str
    log: Path

    @property
    def password(self) -> str:
        return (self.data_dir / "postgres" / "password").read_text().strip()

    def owner(self) -> Api:
        api = Api(self.url)
        api.create_first_user("owner")
        return api.as_user(api.login("owner"))


@pytest.fixture
def root_server(appliance_mirror: Path) -> Iterator[Server]:
    """`appliance server` as root on a fresh data dir: embedded PostgreSQL, one in-process daemon, the key in env."""
    with _root_server(appliance_mirror, traversable_temp_dir("appliance-sandbox-"), {}) as server:
        yield server


@contextmanager
def _root_server(appliance_mirror: Path, root: Path, extra: dict[str, str]) -> Iterator[Server]:
    if os.geteuid() != 0:
        pytest.fail("these tests run the server as root, as `make run` does on a fresh machine")
    psk = secrets.token_urlsafe(32)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
           "APPLIANCE_DATA_DIR": str(root / "data"), "APPLIANCE_MIRROR_DIR": str(appliance_mirror),
           "APPLIANCE_PROVISIONER_PSK": psk, "APPLIANCE_LOG_LEVEL": "warning", "XDG_CONFIG_HOME": str(root), **extra}
    log = root / "server.log"
    process = subprocess.Popen([sys.executable, "-m", "appliance", "server", "--http-address", f"127.0.0.1:{port}"],
                               env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, timeout=120, alive=lambda: process.poll() is None)
        yield Server(url, root / "data", psk, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)


def _template(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.tf").write_text(text)
    return folder


def _import_logs(api: Api, version_id: str) -> str:
    logs = api.get(f"/api/v2/templateversions/{version_id}/logs").json()["logs"]
    return "\n".join(line["output"] for line in logs)


@pytest.mark.security(finding=1)
def test_a_template_cannot_read_the_embedded_postgres_password(root_server: Server, tmp_path: Path) -> None:
    owner = root_server.owner()
    password_file = root_server.data_dir / "postgres" / "password"
    assert password_file.is_file()
    folder = _template(tmp_path, "reader", READ_PASSWORD.format(password=password_file))
    version = wait_version(owner, "reader", push(owner, folder, "reader")["id"])
    shown = owner.get(f"/api/v2/templates/reader/versions/{version['id']}").text
    logs = _import_logs(owner, version["id"])
    assert root_server.password not in logs + shown + version["job"]["error"]
    assert version["job"]["status"] == "failed", logs
    assert "no file exists" in version["job"]["error"].lower() or "Invalid function argument" in logs, logs


@pytest.mark.security(finding=2)
def test_local_exec_runs_unprivileged_blind_to_secrets_and_cannot_poison_later_jobs(
        root_server: Server, tmp_path: Path) -> None:
    owner = root_server.owner()
    daemon_dir = root_server.data_dir / "provisioner" / "built-in-1"
    cli_config = daemon_dir / "terraform.rc"
    folder = _template(tmp_path, "probe", PROBES.format(
        data_dir=root_server.data_dir, password=root_server.data_dir / "postgres" / "password",
        cli_config=cli_config, plugin_cache=daemon_dir / "plugin-cache"))
    version = wait_version(owner, "probe", push(owner, folder, "probe")["id"])
    assert version["job"]["status"] == "succeeded", version["job"]["error"]
    config_before = cli_config.read_bytes()
    created = owner.post("/api/v2/workspaces", json={"template": "probe", "name": "probe"})
    assert created.status_code == 201, created.text
    build = wait_build(owner, created.json()["latest_build"]["id"])
    logs = build_logs(owner, build["id"])
    assert build["status"] == "running", build["job"]["error"] + logs
    assert "(local-exec): DONE" in logs, logs
    uids = [line.split("sandbox-uid=")[1] for line in logs.splitlines() if "(local-exec): sandbox-uid=" in line]
    assert uids and uids[0] not in ("0", str(os.getuid())), logs
    assert "(local-exec): LEAK-" not in logs, logs  # the script itself is echoed; only its output counts
    assert root_server.psk not in logs and root_server.password not in logs
    assert cli_config.read_bytes() == config_before
    # The next job of the same daemon is untouched: a fresh import succeeds with the same CLI config.
    again = wait_version(owner, "probe", push(owner, folder, "probe")["id"])
    assert again["job"]["status"] == "succeeded", again["job"]["error"]
    assert not (daemon_dir / "plugin-cache" / "poison").exists()


def test_without_bubblewrap_a_job_is_refused_with_what_to_install_never_run_unsandboxed(tmp_path: Path) -> None:
    config = tmp_path / "terraform.rc"
    config.write_text("")
    workdir = tmp_path / "job"
    workdir.mkdir()
    sandbox = Sandbox(SANDBOX_UID_BASE + 99, config, bwrap=str(tmp_path / "no-bwrap-here"))
    with pytest.raises(SandboxUnavailable) as refused:
        sandbox.run(workdir, ["sh", "-c", "touch ran-anyway"], {}, timeout=30)
    assert "bubblewrap" in str(refused.value) and "apt-get install bubblewrap" in (refused.value.hint or "")
    assert not (workdir / "ran-anyway").exists()


def test_the_sandbox_refuses_to_run_terraform_as_root_or_as_the_daemon() -> None:
    for uid in (0, os.getuid()):
        with pytest.raises(ValueError, match="neither root nor the daemon's own uid"):
            Sandbox(uid, Path("/nonexistent"))


# Probes the runtime socket from the sandbox. At import (workspace id all zeros) the precondition fails if the
# socket is there (fileexists errors on a socket, so try() gives "present"); in a build, local-exec reports it.
RUNTIME_PROBE = r"""terraform {
  required_providers {
    appliance = { source = "appliance.internal/appliance/appliance" }
  }
}

data "appliance_workspace" "me" {}

locals {
  import = data.appliance_workspace.me.id == "00000000-0000-0000-0000-000000000000"
  socket = try(fileexists("/run/appliance-runtime.sock") ? "regular-file" : "absent", "present")
}

resource "terraform_data" "probe" {
  input = local.socket
  lifecycle {
    precondition {
      condition     = !local.import || local.socket == "absent"
      error_message = "SOCKET-IN-IMPORT"
    }
  }
  provisioner "local-exec" {
    command = <<-EOT
      test -S /run/appliance-runtime.sock && echo SOCKET-PRESENT
      test -n "$APPLIANCE_RUNTIME_TOKEN" && echo TOKEN-PRESENT
      ls -A /run
      echo DONE
    EOT
  }
}
"""


@pytest.fixture
def runtime_socket_server(appliance_mirror: Path) -> Iterator[Server]:
    """The root server, told of a runtime socket it does not run itself (a listening socket of the test's own)."""
    root = traversable_temp_dir("appliance-sandbox-")
    path = root / "runtime" / "runtime.sock"
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        with _root_server(appliance_mirror, root, {"APPLIANCE_RUNTIME_SOCKET": str(path),
                                                   "APPLIANCE_RUNTIME_EMBEDDED": "false"}) as server:
            yield server


def test_the_runtime_socket_is_in_the_sandbox_of_a_build_and_absent_from_an_import(
        runtime_socket_server: Server, tmp_path: Path) -> None:
    owner = runtime_socket_server.owner()
    folder = _template(tmp_path, "runtime", RUNTIME_PROBE)
    version = wait_version(owner, "runtime", push(owner, folder, "runtime")["id"])
    import_logs = _import_logs(owner, version["id"])
    assert version["job"]["status"] == "succeeded", version["job"]["error"] + import_logs
    assert "SOCKET-IN-IMPORT" not in import_logs
    created = owner.post("/api/v2/workspaces", json={"template": "runtime", "name": "runtime"})
    assert created.status_code == 201, created.text
    build = wait_build(owner, created.json()["latest_build"]["id"])
    logs = build_logs(owner, build["id"])
    assert build["status"] == "running", build["job"]["error"] + logs
    assert "(local-exec): SOCKET-PRESENT" in logs and "(local-exec): TOKEN-PRESENT" in logs, logs
    # Nothing else of the host comes with it: /run holds the socket alone.
    assert "(local-exec): appliance-runtime.sock" in logs and "(local-exec): DONE" in logs, logs
    listed = logs.split("(local-exec): TOKEN-PRESENT", 1)[1].split("(local-exec): DONE", 1)[0]
    assert [line.split("(local-exec): ", 1)[1] for line in listed.splitlines() if "(local-exec): " in line] == [
        "appliance-runtime.sock"], logs
