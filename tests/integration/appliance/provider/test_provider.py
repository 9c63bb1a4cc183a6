"""The appliance provider, PyInstaller-built and installed by the real terraform from a filesystem mirror,
runs examples/templates/minimal under the provisioner's environment contract."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[4]
MINIMAL = REPO / "examples" / "templates" / "minimal"
ACCESS_URL = "http://appliance.test:3000/"
AGENT_SCRIPT = "#!/bin/sh\ncurl -fsSL ${ACCESS_URL}bin/agent-linux-amd64 | sh\n"
REGION = """
data "appliance_parameter" "region" {
  name = "region"
  option {
    name  = "Europe"
    value = "eu"
  }
  option {
    name  = "United States"
    value = "us"
  }
}
"""


def parameter_variable(name: str) -> str:
    """The contract, spelled out here rather than imported: the name's sha256, in hex."""
    return "APPLIANCE_PARAMETER_" + hashlib.sha256(name.encode()).hexdigest()


def build_env(transition: str = "start", **parameters: str) -> dict[str, str]:
    """What the provisioner sets for a workspace build."""
    return {
        "APPLIANCE_ACCESS_URL": ACCESS_URL,
        "APPLIANCE_WORKSPACE_ID": "0b6f2a4e-0d5c-4c8e-9d0e-6a1d3c2b1a01",
        "APPLIANCE_WORKSPACE_NAME": "dev",
        "APPLIANCE_WORKSPACE_TRANSITION": transition,
        "APPLIANCE_WORKSPACE_TEMPLATE_ID": "7c1e5a9b-2f3d-4e6a-8b0c-1d2e3f4a5b6c",
        "APPLIANCE_WORKSPACE_TEMPLATE_NAME": "minimal",
        "APPLIANCE_WORKSPACE_TEMPLATE_VERSION": "v1",
        "APPLIANCE_WORKSPACE_BUILD_ID": "3e8d9c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b",
        "APPLIANCE_WORKSPACE_OWNER_ID": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
        "APPLIANCE_WORKSPACE_OWNER_NAME": "alice",
        "APPLIANCE_WORKSPACE_OWNER_EMAIL": "alice@example.org",
        "APPLIANCE_WORKSPACE_OWNER_GROUPS": '["everyone", "developers"]',
        "APPLIANCE_WORKSPACE_OWNER_SSH_PUBLIC_KEY": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice",
        "APPLIANCE_AGENT_SCRIPT_linux_amd64": AGENT_SCRIPT,
        **{parameter_variable(name): value for name, value in parameters.items()},
    }


class Terraform:
    """terraform in one working directory, installing providers only from the appliance mirror tree."""

    def __init__(self, workdir: Path, mirror_tree: Path) -> None:
        self.workdir = workdir
        self.cli_config = workdir / "cli.tfrc"
        self.cli_config.write_text(f'provider_installation {{\n  filesystem_mirror {{\n'
                                   f'    path = "{mirror_tree / "mirror"}"\n  }}\n}}\n')

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "TF_"))}
        full_env = {**base, "TF_CLI_CONFIG_FILE": str(self.cli_config), "TF_IN_AUTOMATION": "1",
                    "CHECKPOINT_DISABLE": "1", **(env or {})}
        return subprocess.run(["terraform", *args, "-no-color"], cwd=self.workdir, env=full_env, capture_output=True,
                              text=True, timeout=300, check=False)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = self(*args, env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    def state(self) -> dict[str, dict[str, Any]]:
        """address -> attribute values, straight from the state file (sensitive values in clear)."""
        state = json.loads((self.workdir / "terraform.tfstate").read_text())
        found = {}
        for resource in state["resources"]:
            prefix = "data." if resource["mode"] == "data" else ""
            for instance in resource["instances"]:
                index = f"[{instance['index_key']}]" if "index_key" in instance else ""
                found[f"{prefix}{resource['type']}.{resource['name']}{index}"] = instance["attributes"]
        return found


def _template(folder: Path, mirror_tree: Path, *extra: str) -> Terraform:
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH; these tests run the real terraform CLI")
    shutil.copytree(MINIMAL, folder)
    for index, text in enumerate(extra):
        (folder / f"extra{index}.tf").write_text(text)
    terraform = Terraform(folder, mirror_tree)
    terraform.ok("init", "-input=false")
    return terraform


@pytest.fixture
def minimal(tmp_path: Path, appliance_mirror: Path) -> Terraform:
    """examples/templates/minimal, initialised in a folder of this test's own."""
    return _template(tmp_path / "minimal", appliance_mirror)


@pytest.fixture(scope="module")
def planning(tmp_path_factory: pytest.TempPathFactory, appliance_mirror: Path) -> Iterator[Terraform]:
    """The minimal template plus a required parameter, shared by tests that only plan (and never apply)."""
    yield _template(tmp_path_factory.mktemp("planning") / "minimal", appliance_mirror, REGION)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """terraform wraps diagnostics to the terminal width; join them back up."""
    return " ".join((result.stdout + result.stderr).split())


def test_a_build_applies_with_the_workspace_the_owner_and_the_parameters(minimal: Terraform) -> None:
    apply = minimal.ok("apply", "-auto-approve", "-input=false", env=build_env(greeting="good morning", cpus="4"))
    assert "Resources: 4 added, 0 changed, 0 destroyed." in apply.stdout
    state = minimal.state()
    workspace, owner = state["data.appliance_workspace.me"], state["data.appliance_workspace_owner.me"]
    assert (workspace["name"], workspace["transition"], workspace["start_count"]) == ("dev", "start", 1)
    assert (workspace["template_name"], workspace["template_version"], workspace["access_url"]) == \
        ("minimal", "v1", ACCESS_URL)
    assert (owner["name"], owner["email"], owner["groups"]) == ("alice", "alice@example.org",
                                                               ["everyone", "developers"])
    assert state["data.appliance_parameter.greeting"]["value"] == "good morning"
    agent = state["appliance_agent.main[0]"]
    assert agent["env"] == {"GREETING": "good morning"}
    assert agent["init_script"] == AGENT_SCRIPT.replace("${ACCESS_URL}", ACCESS_URL)
    assert state["appliance_app.shell[0]"]["agent_id"] == agent["id"]
    metadata = state["appliance_metadata.home"]
    assert metadata["resource_id"] == state["terraform_data.home"]["id"]
    assert metadata["daily_cost"] == 4
    assert metadata["item"] == [{"key": "owner", "value": "alice", "sensitive": None},
                                {"key": "cpus", "value": "4", "sensitive": None}]


def test_the_agent_token_is_in_state_but_never_in_terraform_output(minimal: Terraform) -> None:
    outputs = [minimal.ok("apply", "-auto-approve", "-input=false", env=build_env())]
    token = minimal.state()["appliance_agent.main[0]"]["token"]
    assert len(token) == 36
    # An in-place update (a new greeting changes the agent's env) keeps the token.
    outputs.append(minimal.ok("apply", "-auto-approve", "-input=false", env=build_env(greeting="hi there")))
    assert "1 changed" in outputs[-1].stdout
    assert minimal.state()["appliance_agent.main[0]"]["token"] == token
    outputs += [minimal.ok("show"), minimal.ok("plan", "-input=false", env=build_env(greeting="bye")),
                minimal.ok("state", "show", "appliance_agent.main[0]")]
    # terraform aligns the `=` to the longest attribute name, so the spacing follows the schema.
    assert re.search(r"^\s+token\s+= \(sensitive value\)$", outputs[-1].stdout, re.MULTILINE), outputs[-1].stdout
    for result in outputs:
        assert token not in result.stdout + result.stderr


WATCHED_AGENT = """
resource "appliance_agent" "watched" {
  os                     = "linux"
  arch                   = "amd64"
  connection_timeout     = 45
  startup_script_timeout = 600
  troubleshooting_url    = "https://wiki.example/agents"
  metadata {
    key          = "load"
    display_name = "Load average"
    script       = "cat /proc/loadavg"
    interval     = 10
    timeout      = 3
  }
  metadata {
    key      = "disk"
    script   = "df -h /"
    interval = 60
  }
}
"""


def test_an_agents_timeouts_and_metadata_blocks_reach_what_the_appliance_stores(
        tmp_path: Path, appliance_mirror: Path) -> None:
    from appliance.provisioner.extract import build_resources

    terraform = _template(tmp_path / "watched", appliance_mirror, WATCHED_AGENT)
    terraform.ok("apply", "-auto-approve", "-input=false", env=build_env())
    found = [a for r in build_resources((terraform.workdir / "terraform.tfstate").read_bytes()) for a in r.agents]
    watched, main = sorted(found, key=lambda agent: agent.name != "watched")
    assert (watched.connection_timeout_seconds, watched.startup_script_timeout_seconds) == (45, 600)
    assert watched.troubleshooting_url == "https://wiki.example/agents"
    assert watched.metadata == [
        {"key": "load", "display_name": "Load average", "script": "cat /proc/loadavg", "interval": 10, "timeout": 3},
        {"key": "disk", "display_name": "disk", "script": "df -h /", "interval": 60, "timeout": 60}]
    assert (main.connection_timeout_seconds, main.startup_script_timeout_seconds, main.metadata) == (120, 300, [])


def test_stop_destroys_the_agent_and_the_app_and_keeps_the_home(minimal: Terraform) -> None:
    minimal.ok("apply", "-auto-approve", "-input=false", env=build_env())
    started = minimal.state()
    stop = minimal.ok("apply", "-auto-approve", "-input=false", env=build_env("stop"))
    assert "Resources: 0 added, 0 changed, 2 destroyed." in stop.stdout
    assert "Warning" not in stop.stdout + stop.stderr
    stopped = minimal.state()
    assert not [address for address in stopped if address.startswith(("appliance_agent.", "appliance_app."))]
    assert stopped["terraform_data.home"] == started["terraform_data.home"]
    assert stopped["appliance_metadata.home"]["id"] == started["appliance_metadata.home"]["id"]
    assert stopped["data.appliance_workspace.me"]["start_count"] == 0
    minimal.ok("apply", "-auto-approve", "-input=false", env=build_env("start"))
    restarted = minimal.state()
    assert restarted["terraform_data.home"] == started["terraform_data.home"]
    assert restarted["appliance_agent.main[0]"]["token"] != started["appliance_agent.main[0]"]["token"]


@pytest.mark.parametrize(("parameters", "message"), [
    ({"greeting": "Hello World"},
     'Invalid value for parameter "greeting" with data.appliance_parameter.greeting, on main.tf line 15, in data '
     '"appliance_parameter" "greeting": 15: data "appliance_parameter" "greeting" { The value "Hello World" does '
     "not match the regex ^[a-z ]{1,40}$ (validation regex). Use 1 to 40 lowercase letters and spaces."),
    ({"cpus": "9"}, 'Invalid value for parameter "cpus"'),
    ({"cpus": "9"}, 'The value "9" is not between 1 and 8 (validation min and max).'),
    ({"cpus": "lots"}, 'The value "lots" is not a number.'),
    ({"region": "asia"}, 'The value "asia" is not one of the options: "eu", "us".'),
], ids=["a greeting that misses the regex", "too many cpus: the parameter", "too many cpus: the rule",
        "cpus that are not a number", "a region outside the options"])
def test_a_parameter_failing_validation_fails_the_plan_with_the_rule(planning: Terraform, parameters: dict[str, str],
                                                                     message: str) -> None:
    plan = planning("plan", "-input=false", env=build_env(**{"region": "eu", **parameters}))
    assert plan.returncode == 1
    assert message in _one_line(plan)


def test_a_build_missing_a_required_parameter_fails_clearly(planning: Terraform) -> None:
    plan = planning("plan", "-input=false", env=build_env())
    assert plan.returncode == 1
    assert ('Missing value for required parameter "region" with data.appliance_parameter.region, on extra0.tf line 2'
            in _one_line(plan))
    assert "Give it one when creating or updating the workspace (appliance create ... --parameter region=VALUE)." \
        in _one_line(plan)


def _resources(module: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["address"]: r for r in module.get("resources", [])}


def test_the_plan_json_of_an_import_carries_every_parameter_definition(planning: Terraform) -> None:
    """What the template importer reads: a template import has no build id and no values."""
    env = {k: v for k, v in build_env().items() if k != "APPLIANCE_WORKSPACE_BUILD_ID"}
    planning.ok("plan", "-input=false", "-out", "import.tfplan", env=env)
    plan = json.loads(planning.ok("show", "-json", "import.tfplan").stdout)
    # Data sources are read while planning: their values are in prior_state, not in planned_values.
    read = _resources(plan["prior_state"]["values"]["root_module"])
    assert not [a for a in _resources(plan["planned_values"]["root_module"]) if a.startswith("data.")]
    greeting, cpus, region = (read[f"data.appliance_parameter.{n}"]["values"] for n in ("greeting", "cpus", "region"))
    assert {k: greeting[k] for k in ("name", "display_name", "type", "default", "mutable", "value", "order")} == {
        "name": "greeting", "display_name": "Greeting", "type": "string", "default": "hello", "mutable": True,
        "value": "hello", "order": 1}
    assert greeting["validation"] == {"min": None, "max": None, "regex": "^[a-z ]{1,40}$",
                                      "error": "Use 1 to 40 lowercase letters and spaces."}
    assert (cpus["type"], cpus["default"], cpus["mutable"], cpus["validation"]["min"], cpus["validation"]["max"]) == \
        ("number", "2", False, 1, 8)
    assert (region["type"], region["default"], region["value"], region["validation"]) == ("string", None, "", None)
    assert region["option"] == [{"name": "Europe", "value": "eu", "description": None},
                                {"name": "United States", "value": "us", "description": None}]
    # Agents and apps the build would create are in planned_values (their ids are not known yet).
    planned = _resources(plan["planned_values"]["root_module"])
    assert planned["appliance_agent.main[0]"]["values"]["os"] == "linux"
    assert planned["appliance_app.shell[0]"]["values"]["slug"] == "shell"
    assert planned["appliance_agent.main[0]"]["sensitive_values"]["token"] is True


@pytest.mark.parametrize(("block", "problem"), [
    ('data "appliance_parameter" "bad" {\n  name = "size"\n  type = "integer"\n}\n',
     'Type "integer" is not one of string, number, bool, list(string). Fix its appliance_parameter block'),
    ('data "appliance_parameter" "bad" {\n  name = "cpus2"\n  type = "number"\n  default = 9\n'
     '  validation {\n    min = 1\n    max = 8\n  }\n}\n',
     'The default "9" is not between 1 and 8 (validation min and max).'),
    ('resource "appliance_agent" "bad" {\n  os = "plan9"\n  arch = "amd64"\n}\n', "Unsupported agent os 'plan9'"),
    ('resource "appliance_app" "bad" {\n  agent_id = "x"\n  slug = "Not A Slug"\n}\n',
     "slug 'Not A Slug' must be lowercase letters and digits"),
    pytest.param('data "appliance_parameter" "bad" {\n  name = "twice"\n  validation {\n'
                 '    regex = "^(\\\\w+)-\\\\1$"\n  }\n}\n',
                 'Invalid definition of parameter "twice" with data.appliance_parameter.bad, on mistake.tf line 1, '
                 'in data "appliance_parameter" "bad": 1: data "appliance_parameter" "bad" { Validation regex '
                 "^(\\w+)-\\1$ does not compile in RE2", marks=pytest.mark.security(finding=7)),
    ('resource "appliance_agent" "bad" {\n  os = "linux"\n  arch = "amd64"\n'
     '  metadata {\n    key = "load"\n    script = "uptime"\n    interval = 5\n  }\n'
     '  metadata {\n    key = "load"\n    script = "uptime"\n    interval = 0\n  }\n}\n',
     "Invalid agent metadata: interval of 'load' must be at least 1 second, got 0"),
], ids=["a parameter of an unknown type", "a default outside its own range", "an agent for an unknown os",
        "an app slug with spaces", "a regex with a backreference, which RE2 cannot run",
        "agent metadata with an interval of 0"])
def test_terraform_validate_catches_template_mistakes(planning: Terraform, block: str, problem: str) -> None:
    mistake = planning.workdir / "mistake.tf"
    mistake.write_text(block)
    try:
        validate = planning("validate")
    finally:
        mistake.unlink()
    assert validate.returncode == 1
    assert problem in _one_line(validate)


SLUG = """
data "appliance_parameter" "slug" {
  name    = "slug"
  default = "dev"
  validation {
    regex = "^([a-z0-9]+-?)*$"
  }
}
"""


@pytest.mark.security(finding=7)
def test_a_catastrophic_regex_fails_the_plan_at_once_with_the_right_answer(planning: Terraform) -> None:
    """Backtracking took 1.8 s for 24 characters and doubles every character; the built provider runs RE2."""
    value = "a" * 60 + "!"
    slug = planning.workdir / "slug.tf"
    slug.write_text(SLUG)
    try:
        plan = planning("plan", "-input=false", env=build_env(region="eu", slug=value))
    finally:
        slug.unlink()
    assert plan.returncode == 1
    assert 'Invalid value for parameter "slug"' in _one_line(plan)
    assert f'The value "{value}" does not match the regex ^([a-z0-9]+-?)*$ (validation regex).' in _one_line(plan)
