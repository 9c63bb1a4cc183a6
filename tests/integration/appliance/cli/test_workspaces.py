"""The `appliance` CLI publishing templates and driving workspaces through their builds, as a user types it:
the real command against a live server whose in-process provisioner runs the real terraform with the real
appliance provider from the real mirror."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.cli.builds import parse_events
from appliance.cli.workspaces import MASK, masked
from appliance.sdk.workspaces import WorkspaceResponse
from appliance.templates.archive import MAX_SOURCE_BYTES, source_archive
from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.postgres import create_database, drop_database
from tests.support.server import LiveServer, live_server

MINIMAL = Path(__file__).resolve().parents[4] / "examples" / "templates" / "minimal"
PROVIDER = """
terraform {
  required_providers {
    appliance = { source = "appliance.internal/appliance/appliance" }
  }
}
"""
# A template with a validated parameter and a required one, to see the server's field errors.
CHECKED = PROVIDER + """
data "appliance_parameter" "cpu" {
  name    = "cpu"
  type    = "number"
  default = "2"
  validation {
    min = 1
    max = 8
  }
}
data "appliance_parameter" "region" {
  name = "region"
  option {
    name  = "Europe"
    value = "eu"
  }
  option {
    name  = "America"
    value = "us"
  }
}
"""


class Cli:
    """`python -m appliance ...` with its own config home (so its own stored session)."""

    def __init__(self, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        self.env["XDG_CONFIG_HOME"] = str(home)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "appliance", *args]

    def __call__(self, *args: str, input: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(*args), input=input, capture_output=True, text=True, timeout=300,
                                env=self.env, check=False)
        if ok:
            assert result.returncode == 0, f"appliance {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--output", "json").stdout)


@pytest.fixture(scope="module")
def build_server(appliance_mirror: Path, admin_conninfo: str, template_db: str, site_pki: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own (own database) with one in-process provisioner daemon and the real mirror."""
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH; these tests run the real terraform CLI")
    conninfo = create_database(admin_conninfo, "cli_workspaces", template=template_db)
    work = tmp_path_factory.mktemp("cli-workspaces")
    try:
        with live_server(conninfo, pki_dir=site_pki, mirror_dir=appliance_mirror, data_dir=work,
                         provisioner_daemons=1, provisioner_dir=work / "provisioner") as live:
            Api(live.url).create_first_user("owner")
            yield live
    finally:
        drop_database(admin_conninfo, "cli_workspaces")


@pytest.fixture
def cli(tmp_path: Path, build_server: LiveServer) -> Cli:
    """The owner, logged in. Tests share the server, so each uses template and workspace names of its own."""
    cli = Cli(tmp_path / "home")
    cli("login", build_server.url, "--username", "owner", "--password", DEFAULT_PASSWORD)
    return cli


def write_template(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "main.tf").write_text(text)
    return folder


def test_push_imports_the_template_and_lists_its_parameters(cli: Cli, tmp_path: Path) -> None:
    source = write_template(tmp_path / "checked", CHECKED)
    pushed = cli("templates", "push", str(source), "--name", "checked", "--message", "first")
    assert "Created template checked." in pushed.stderr
    assert "Imported checked v1; it is the active version." in pushed.stdout
    assert "[Initializing] $ terraform init" in pushed.stdout and "[Planning]" in pushed.stdout  # with stages
    table = pushed.stdout.split("Imported", 1)[1]
    assert "cpu" in table and "number" in table and "region" in table and "(required)" in table
    assert "eu, us" in table
    listed = {t["name"]: t for t in cli.json("templates", "list")}
    assert listed["checked"]["active_version_name"] == "v1"
    [version] = cli.json("templates", "versions", "checked")
    assert (version["name"], version["message"], version["job"]["status"]) == ("v1", "first", "succeeded")


def test_push_of_a_template_that_does_not_parse_fails_and_keeps_the_active_version(cli: Cli, tmp_path: Path) -> None:
    good = write_template(tmp_path / "good", CHECKED)
    cli("templates", "push", str(good), "--name", "parsing")
    bad = write_template(tmp_path / "bad", PROVIDER + 'resource "appliance_app" "x" {\n  slug = "a"\n')
    failed = cli("templates", "push", str(bad), "--name", "parsing", ok=False)
    assert failed.returncode == 1
    assert "Unclosed configuration block" in failed.stdout + failed.stderr
    assert "The import of parsing v2 failed" in failed.stderr
    assert "The active version is still v1." in failed.stderr
    assert "Traceback" not in failed.stderr
    versions = {v["name"]: v for v in cli.json("templates", "versions", "parsing")}
    assert versions["v2"]["job"]["status"] == "failed" and not versions["v2"]["active"]
    assert versions["v1"]["active"]


# Checked before anything is sent: the URL answers nothing.
OFFLINE = ("--url", "http://127.0.0.1:9", "--token", "unused")


def test_push_refuses_a_directory_without_terraform_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = Cli(tmp_path)("templates", "push", str(tmp_path / "empty"), "--name", "empty", *OFFLINE, ok=False)
    assert result.returncode == 1 and "has no .tf files" in result.stderr


def test_create_with_a_bad_parameter_shows_the_field_error(cli: Cli, tmp_path: Path) -> None:
    cli("templates", "push", str(write_template(tmp_path / "t", CHECKED)), "--name", "validated")
    too_big = cli("create", "big", "--template", "validated", "-p", "cpu=99", "-p", "region=eu", ok=False)
    assert too_big.returncode == 1
    assert "field: parameters.cpu" in too_big.stderr and '"99"' in too_big.stderr and "8" in too_big.stderr
    not_an_option = cli("create", "far", "--template", "validated", "-p", "region=mars", ok=False)
    assert "field: parameters.region" in not_an_option.stderr and "mars" in not_an_option.stderr
    assert "not one of the options" in not_an_option.stderr
    unknown = cli("create", "odd", "--template", "validated", "-p", "region=eu", "-p", "gpu=1", ok=False)
    assert "Unknown parameter(s): gpu." in unknown.stderr and "parameters.gpu" in unknown.stderr
    missing = cli("create", "bare", "--template", "validated", ok=False)  # stdin is not a terminal: no prompt
    assert "Template validated needs a value for: region." in missing.stderr
    assert all(w["template_name"] != "validated" for w in cli.json("list"))


def test_a_workspace_lives_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    cli("templates", "push", str(MINIMAL), "--name", "minimal")
    version = cli.json("templates", "show", "minimal")
    values = [f"{p['name']}={p['options'][0]['value'] if p['options'] else 'x'}"
              for p in version["parameters"] if p["required"]]

    created = cli("create", "dev", "--template", "minimal", *(a for v in values for a in ("-p", v)))
    assert "The start build of dev succeeded." in created.stderr
    assert "[Planning]" in created.stdout and "[Applying]" in created.stdout, created.stdout

    [listed] = [w for w in cli.json("list") if w["name"] == "dev"]
    assert (listed["owner_name"], listed["template_name"], listed["status"]) == ("owner", "minimal", "running")
    table = cli("list").stdout
    assert "dev" in table and "running" in table and "minimal" in table

    shown = cli("show", "dev").stdout
    assert "Status:     running" in shown and "agent " in shown and "app " in shown
    shown_json = cli.json("show", "dev")
    items = [i for r in shown_json["latest_build"]["resources"] for i in r["metadata"]]
    assert all(i["value"] == MASK for i in items if i["sensitive"])
    running = {r["address"] for r in shown_json["latest_build"]["resources"]}

    stopped = cli("stop", "dev")
    assert "The stop build of dev succeeded." in stopped.stderr
    after_stop = cli.json("show", "dev")
    assert after_stop["status"] == "stopped"
    assert {r["address"] for r in after_stop["latest_build"]["resources"]} < running  # the ephemeral ones went

    queued = cli("start", "dev", "--no-wait")
    assert "'appliance builds logs dev -f'" in queued.stdout
    followed = cli("builds", "logs", "dev", "-f")
    assert followed.returncode == 0 and "[" in followed.stdout
    assert cli.json("show", "dev")["status"] == "running"

    assert "already uses the active version" in cli("update", "dev").stdout
    cli("templates", "push", str(MINIMAL), "--name", "minimal", "--message", "second")
    assert cli.json("show", "dev")["outdated"] is True
    assert "outdated: the active version is v2" in cli("show", "dev").stdout
    cli("update", "dev")
    updated = cli.json("show", "dev")
    assert (updated["template_version_name"], updated["outdated"], updated["status"]) == ("v2", False, "running")

    builds = cli.json("builds", "list", "dev")
    assert [(b["build_number"], b["transition"], b["status"]) for b in builds] == [
        (4, "start", "running"), (3, "start", "running"), (2, "stop", "stopped"), (1, "start", "running")]
    logs = cli("builds", "logs", builds[-1]["id"]).stdout
    assert logs.strip() and "[" in logs

    refused = cli("delete", "dev", input="n\n", ok=False)
    assert refused.returncode == 1 and "Delete workspace dev" in refused.stderr
    deleted = cli("delete", "dev", "--yes")
    assert "The delete build of dev succeeded." in deleted.stderr
    assert all(w["name"] != "dev" for w in cli.json("list"))
    assert "does not exist" in cli("show", "dev", ok=False).stderr


def test_an_admin_acts_on_another_users_workspace_by_owner_and_name(cli: Cli, build_server: LiveServer,
                                                                    tmp_path: Path) -> None:
    owner = Api(build_server.url)
    owner = owner.as_user(owner.login("owner"))
    owner.create_user(username="bob")
    cli("templates", "push", str(write_template(tmp_path / "t", PROVIDER)), "--name", "plain")
    cli("create", "box", "--template", "plain", "--owner", "bob")
    assert all(w["name"] != "box" for w in cli.json("list"))
    [everyone] = [w for w in cli.json("list", "--all") if w["name"] == "box"]
    assert everyone["owner_name"] == "bob"
    assert "Workspace:  bob/box" in cli("show", "bob/box").stdout
    queued = cli("delete", "bob/box", "-y", "--no-wait").stdout
    build_id = queued.split("'appliance builds logs ", 1)[1].split(" ", 1)[0]  # the name stops resolving
    assert "Workspace delete finished." in cli("builds", "logs", build_id, "-f").stdout
    assert "No workspace bob/box." in cli("show", "bob/box", ok=False).stderr


def test_ctrl_c_stops_following_and_says_how_to_resume(tmp_path: Path, owner_api: Api, server: LiveServer) -> None:
    """The shared server runs no provisioner daemon, so the import stays queued while the CLI follows it."""
    cli = Cli(tmp_path / "home")
    cli("login", server.url, "--username", "owner", "--password", DEFAULT_PASSWORD)
    source = write_template(tmp_path / "t", PROVIDER)
    follower = subprocess.Popen(cli.command("templates", "push", str(source), "--name", "queued"), env=cli.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stderr is not None
        assert "Importing queued v1:" in follower.stderr.readline() + follower.stderr.readline()
        time.sleep(0.5)
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 130
    assert "Stopped following the logs; the job goes on." in err
    assert "'appliance templates versions queued'" in err
    assert "Traceback" not in err
    [version] = owner_api.get("/api/v2/templates/queued/versions").json()["versions"]
    assert version["job"]["status"] == "pending"


def test_the_template_tar_is_deterministic_and_leaves_out_state_and_caches(tmp_path: Path) -> None:
    source = write_template(tmp_path / "t", PROVIDER)
    (source / "scripts").mkdir()
    (source / "scripts" / "run.sh").write_text("#!/bin/sh\n")
    (source / "scripts" / "run.sh").chmod(0o755)
    for skipped in (".terraform/providers/x", ".git/HEAD", "terraform.tfstate", "terraform.tfstate.backup"):
        (source / skipped).parent.mkdir(parents=True, exist_ok=True)
        (source / skipped).write_text("skip me")
    first = source_archive(source)
    os.utime(source / "main.tf", (0, 12345))
    assert source_archive(source) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["main.tf", "scripts/run.sh"]
    assert members["scripts/run.sh"].mode == 0o755 and members["main.tf"].mode == 0o644
    assert {(m.mtime, m.uid, m.uname) for m in members.values()} == {(0, 0, "")}


def test_a_template_over_the_size_limit_is_refused_naming_the_largest_file(tmp_path: Path) -> None:
    source = write_template(tmp_path / "huge", PROVIDER)
    (source / "disk.img").write_bytes(os.urandom(MAX_SOURCE_BYTES + 1))
    result = Cli(tmp_path)("templates", "push", str(source), "--name", "huge", *OFFLINE, ok=False)
    assert result.returncode == 1
    assert "a push takes at most 10 MiB" in result.stderr and "disk.img" in result.stderr


@pytest.mark.parametrize(("lines", "events"), [
    (["event: log", 'data: {"id": 1}', "", ": keep-alive", "", "event: end", 'data: {"status": "failed"}', ""],
     [("log", '{"id": 1}'), ("end", '{"status": "failed"}')]),
    (["data: a", "data: b", ""], [("message", "a\nb")]),
    (["event: end", "data:x"], [("end", "x")]),
], ids=["a log, a keep-alive comment and the end", "multi-line data", "a last event without a blank line"])
def test_server_sent_events_are_parsed(lines: list[str], events: list[tuple[str, str]]) -> None:
    assert list(parse_events(lines)) == events


def test_show_masks_sensitive_metadata() -> None:
    job = {"id": "j1", "status": "succeeded", "error": "", "created_at": "2026-01-02T03:04:05+00:00",
           "started_at": None, "completed_at": None}
    resource = {"type": "podman_container", "name": "dev", "address": "podman_container.dev", "daily_cost": 0,
                "agents": [], "metadata": [{"key": "password", "value": "hunter2", "sensitive": True},
                                           {"key": "size", "value": "10 GB", "sensitive": False}]}
    build = {"id": "b1", "workspace_id": "w1", "build_number": 1, "transition": "start", "status": "running",
             "job": job, "initiator_name": "ada", "template_version_id": "v1", "template_version_name": "v1",
             "created_at": "2026-01-02T03:04:05+00:00", "resources": [resource]}
    workspace = WorkspaceResponse.model_validate({
        "id": "w1", "name": "dev", "owner_id": "u1", "owner_name": "ada", "template_id": "t1", "template_name": "base",
        "template_version_id": "v1", "template_version_name": "v1", "outdated": False, "status": "running",
        "parameters": {}, "latest_build": build, "created_at": "2026-01-02T03:04:05+00:00",
        "updated_at": "2026-01-02T03:04:05+00:00"})
    items = masked(workspace).latest_build.resources[0].metadata
    assert [i["value"] for i in items] == [MASK, "10 GB"]
    assert workspace.latest_build.resources[0].metadata[0]["value"] == "hunter2"
