"""nginx accepts the locations the roles write, as rendered from their templates (nginx -t, as the handler runs it).

A location nginx cannot parse fails the install at the nginx handler, on the offline host, minutes in.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.installed import nginx_conf


def test_nginx_accepts_the_console_gateway_and_relay_locations(tmp_path: Path) -> None:
    if shutil.which("nginx") is None:
        pytest.fail("nginx is missing: apt-get install nginx-light")
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / kind).mkdir()
    conf = nginx_conf(tmp_path, 9, tmp_path / "console.sock", tmp_path / "gateway.sock", tmp_path / "relay.sock")
    checked = subprocess.run(["nginx", "-t", "-q", "-c", str(conf)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
