"""The health report's derp section against the installed layout: nginx -> `appliance relay serve`, stopped.

tests/integration/appliance/health/test_health.py points the check at a closed port; here the relay is
its own process, as on an installed host, and stopping it is what turns the section to EDERP02.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.db.database import Database
from appliance.health.report import run_report
from tests.support.installed import installed_layout
from tests.support.server import make_config

pytestmark = pytest.mark.integration


def _exited(pid: int) -> bool:
    """Gone, or a zombie: the harness reaps its children only when the layout stops."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _exited(pid):
            return
        time.sleep(0.1)
    raise AssertionError(f"the relay (pid {pid}) did not stop within 30 s")


def test_stopping_the_installed_relay_turns_the_derp_section_to_ederp02(fresh_db: str, site_pki: Path) -> None:
    with installed_layout(fresh_db, relay=True, pki_dir=site_pki) as served:
        assert served.relay_pid is not None
        config = replace(make_config(port=1, postgres_url=fresh_db, pki_dir=site_pki), access_url=served.url)
        db = Database(fresh_db)
        try:
            before = run_report(config, db).derp
            assert before.severity == "ok", before
            os.kill(served.relay_pid, signal.SIGTERM)  # what `systemctl stop appliance-relay` sends
            _wait_gone(served.relay_pid)
            after = run_report(config, db).derp
        finally:
            db.close()
    assert after.severity == "error" and [f.code for f in after.findings] == ["EDERP02"], after
    assert "systemctl status appliance-relay" in after.findings[0].message
