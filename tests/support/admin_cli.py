"""Running `appliance maintenance` and `appliance releases` as the installer does, on the installed database."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import psycopg
from click.testing import CliRunner

from appliance.cli.main import cli
from tests.support.cli import COMMAND
from tests.support.postgres import conninfo_url

Admin = Callable[..., subprocess.CompletedProcess[str]]


def admin_env(conninfo: str) -> dict[str, str]:
    """The environment root runs `appliance` in on an installed host: the database from the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    return env | {"APPLIANCE_POSTGRES_URL": conninfo_url(conninfo)}


def admin_cli(conninfo: str, *, in_process: bool = True) -> Admin:
    """`appliance ARGS` as root runs it; in this process by default (the same command object, without an
    interpreter start that costs seconds on a loaded CI host), or as its own process."""

    def run(*args: str, ok: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if in_process:
            result = CliRunner().invoke(cli, list(args), env=admin_env(conninfo))
            done = subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
        else:
            done = subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=admin_env(conninfo),
                                  timeout=timeout, check=False)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    return run


def maintenance_off(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("UPDATE maintenance SET active = false, reason = NULL, since = NULL")
