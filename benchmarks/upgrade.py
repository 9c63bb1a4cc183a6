"""Upgrade time and downtime, v1 -> v2 on the offline nspawn host (issue 16's benchmark).

The figures come from the e2e test that performs the upgrade, so the benchmark and the test share
one build of v1 and one installed host: tests/e2e/test_upgrade.py runs a poller of /healthz and a
poller of /api/v2/buildinfo inside the host during the happy-path upgrade and prints one line,

    BENCHMARK upgrade A -> B: total N s; downtime seen by pollers: healthz N s, api N s;
    installer-measured N s; steps: maintenance N s, backup N s, stage N s, ...

(downtime = the longest span each poller saw failures; goal: under 30 s, the upgrade under 2 min).
Backup and restore throughput per GB are i16-backup's benchmark.

Run as root from the repository root (about 20 minutes on 2 cores, most of it building v1):

    .venv/bin/python benchmarks/upgrade.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "pytest", "-x", "-s", "-q", "tests/e2e/test_upgrade.py"]
    with subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True) as run:
        assert run.stdout is not None
        for line in run.stdout:
            if line.startswith(("BENCHMARK", "case ", "v1 installed", "derived bundles", "bundle built")):
                print(line, end="", flush=True)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
