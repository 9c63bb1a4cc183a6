"""The installer's side of the control plane: `appliance maintenance` and `appliance releases`, run as it runs them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.support.cli import COMMAND
from tests.support.postgres import conninfo_url

Admin = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def admin(shared_conninfo: str) -> Iterator[Admin]:
    """`appliance ARGS` against the shared database, as root runs it with the installed config; leaves
    maintenance off afterwards so the shared server's other tests can write."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_POSTGRES_URL"] = conninfo_url(shared_conninfo)

    def run(*args: str, ok: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    yield run
    with psycopg.connect(shared_conninfo, autocommit=True) as conn:
        conn.execute("UPDATE maintenance SET active = false, reason = NULL, since = NULL")
