"""The external daemon's entry point loads no part of the control plane, and `appliance` still lists every command.

The import check runs in a fresh interpreter (a subprocess of `python -c`, no socket): in this
process other tests have long since imported Flask and psycopg.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from appliance.cli.main import COMMANDS, cli

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[4]
CONTROL_PLANE = ("psycopg", "psycopg_pool", "flask", "werkzeug", "argon2", "waitress", "cheroot",
                 "appliance.db", "appliance.auth", "appliance.audit", "appliance.api", "appliance.console",
                 "appliance.templates", "appliance.workspaces", "appliance.provisioner", "appliance.server")
# Import the named modules (every module of a package), then resolve `appliance provisionerd start`
# the way the command line does; print what ended up in sys.modules.
_PROBE = """
import importlib, json, pkgutil, sys
import click
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        importlib.import_module(info.name)
from appliance.cli.main import cli
ctx = click.Context(cli)
cli.get_command(ctx, "provisionerd").get_command(ctx, "start")
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_after_importing(*modules: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=120)
    return set(json.loads(result.stdout))


def test_the_external_daemon_loads_neither_the_database_nor_flask_nor_argon2() -> None:
    loaded = _loaded_after_importing("appliance.cli.provisionerd", "appliance.provisionerd", "appliance.sdk")
    assert "appliance.provisionerd.remote" in loaded and "appliance.provisionerd.runner" in loaded
    assert sorted(loaded & set(CONTROL_PLANE)) == []


def test_the_probe_sees_the_control_plane_when_the_in_process_provisioner_is_imported() -> None:
    loaded = _loaded_after_importing("appliance.provisioner.local")
    assert {"psycopg", "appliance.db", "appliance.provisioner"} <= loaded


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_lazy_subcommand_resolves_to_the_command_of_that_name(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command) and command.name == name


def test_help_lists_every_command_with_its_summary() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:", 1)[1]
    assert [line.split()[0] for line in listed.strip().splitlines()] == sorted(COMMANDS)
    assert "Run provisioner daemons outside the server process." in listed
