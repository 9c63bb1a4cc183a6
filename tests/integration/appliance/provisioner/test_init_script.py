"""The agent's init script (AGENT_SCRIPT) run by sh against a real HTTP server: retries, rename, environment."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from appliance.provisioner.coordinator import JobSite

# What the test serves as "the agent": it shows what the init script gave it.
FAKE_AGENT = b'#!/bin/sh\necho "agent url=$APPLIANCE_AGENT_URL ca=$SSL_CERT_FILE token=$APPLIANCE_AGENT_TOKEN"\n'


class Flaky:
    """Answers 503 to the first `failures` downloads, then the fake agent; records when each request came."""

    def __init__(self, failures: int) -> None:
        self.failures, self.times = failures, list[float]()
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                flaky.times.append(time.monotonic())
                if len(flaky.times) <= flaky.failures or self.path != "/bin/appliance-agent-linux-amd64":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(FAKE_AGENT)))
                self.end_headers()
                self.wfile.write(FAKE_AGENT)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    server = Flaky(failures=2)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()


def start_script(url: str, tmp: Path) -> subprocess.Popen[str]:
    script = JobSite(url, "127.0.0.1:3002").agent_script().replace("${ACCESS_URL}", url)
    return subprocess.Popen(["sh", "-c", script], env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp),
                                                       "APPLIANCE_AGENT_TOKEN": "the-token"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_script_retries_with_growing_waits_then_runs_the_agent_with_its_url(flaky: Flaky, tmp_path: Path) -> None:
    process = start_script(flaky.url, tmp_path)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.strip() == f"agent url={flaky.url} ca={tmp_path}/appliance-ca.pem token=the-token"
    first_wait, second_wait = (b - a for a, b in zip(flaky.times, flaky.times[1:], strict=False))
    assert 0.5 <= first_wait < 1.5 and 1.0 <= second_wait < 2.5, flaky.times  # 1 s then 2 s, each 50-100%
    assert "downloading the agent from" in err and err.count("download failed; retrying in") == 2
    assert "starting the agent" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appliance-agent", "appliance-ca.pem"]  # no .partial


def test_sigterm_stops_the_script_while_it_waits_to_retry(tmp_path: Path) -> None:
    process = start_script("http://127.0.0.1:9/", tmp_path)  # nothing listens on the discard port
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    process.communicate(timeout=10)
    assert process.returncode == 143 and time.monotonic() - started < 2
