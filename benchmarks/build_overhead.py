"""What the control plane adds to a terraform run, and how many builds two daemons get through.

1. Overhead: wall time from `POST /api/v2/workspaces` (whose first build is a start) to the build
   succeeded, for examples/templates/minimal (one agent, one app), against running
   `terraform init && terraform apply` by hand on the same template with the same mirror in a
   fresh directory. Rounds alternate; medians and the ratio are printed.
2. Throughput: 50 (--jobs) builds queued while no daemon runs, then drained by 1 daemon and,
   separately, by 2; jobs/minute for each and the ratio 2-daemon/1-daemon are printed.

Everything is real: PostgreSQL, the API over loopback HTTP, in-process daemons, terraform, the
appliance provider packaged with PyInstaller and installed from a filesystem mirror.

    .venv/bin/python benchmarks/build_overhead.py [--rounds 5] [--jobs 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.db.migrate import apply_migrations  # noqa: E402 -- after the sys.path line above
from appliance.provisioner.local import start_in_process  # noqa: E402
from appliance.provisionerd.cliconfig import filesystem_mirror_config  # noqa: E402
from tests.support.api import Api  # noqa: E402
from tests.support.postgres import create_database, running_cluster  # noqa: E402
from tests.support.server import LiveServer, live_server  # noqa: E402
from tests.support.workspaces import MINIMAL, push, wait_build, wait_version  # noqa: E402


def publish_provider(mirror: Path) -> None:
    subprocess.run([sys.executable, "-m", "appliance", "provider", "publish", str(mirror)], check=True)


def by_hand(work: Path, mirror: Path) -> float:
    """`terraform init && terraform apply` in a fresh copy of the template, as a person would."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(MINIMAL, work)
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(filesystem_mirror_config(work / ".rc", mirror)),
           "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    started = time.perf_counter()
    for args in (["init", "-input=false"], ["apply", "-input=false", "-auto-approve"]):
        result = subprocess.run(["terraform", *args, "-no-color"], cwd=work, env=env, capture_output=True,
                                text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"terraform {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started


def through_api(api: Api, name: str) -> float:
    started = time.perf_counter()
    created = api.post("/api/v2/workspaces", json={"template": "minimal", "name": name, "parameters": {}})
    assert created.status_code == 201, created.text
    build = wait_build(api, created.json()["latest_build"]["id"], timeout=600)
    elapsed = time.perf_counter() - started
    assert build["status"] == "running", build["job"]["error"]
    return elapsed


def drain(api: Api, server: LiveServer, prefix: str, jobs: int, daemons: int) -> float:
    """Queue `jobs` builds with no daemon, start `daemons`, return jobs per minute until all succeeded."""
    builds = []
    for index in range(jobs):
        created = api.post("/api/v2/workspaces", json={"template": "minimal", "name": f"{prefix}{index}",
                                                       "parameters": {}})
        assert created.status_code == 201, created.text
        builds.append(created.json()["latest_build"]["id"])
    started = time.perf_counter()
    running = start_in_process(server.config, server.db, count=daemons)
    try:
        results = [wait_build(api, b, timeout=3600) for b in builds]
    finally:
        running.stop()
    elapsed = time.perf_counter() - started
    assert all(r["status"] == "running" for r in results), [r["job"]["error"] for r in results if r["job"]["error"]]
    return jobs / (elapsed / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="build-overhead-"))
    try:
        mirror = scratch / "mirror"
        publish_provider(mirror)
        with running_cluster() as cluster:
            conninfo = create_database(cluster.conninfo("postgres"), "bench")
            apply_migrations(conninfo)
            with live_server(conninfo, mirror_dir=mirror, provisioner_dir=scratch / "provisioner") as server:
                api = Api(server.url)
                api.create_first_user("bench")
                api = api.as_user(api.login("bench"))
                daemon = start_in_process(server.config, server.db, count=1)
                try:
                    wait_version(api, "minimal", push(api, MINIMAL, "minimal")["id"])
                    through_api(api, "warmup")
                    hand, control = [], []
                    for index in range(args.rounds):
                        hand.append(by_hand(scratch / "by-hand", mirror))
                        control.append(through_api(api, f"round{index}"))
                finally:
                    daemon.stop()
                one = drain(api, server, "one", args.jobs, daemons=1)
                two = drain(api, server, "two", args.jobs, daemons=2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"build, one agent + one app ({args.rounds} rounds, medians):")
    print(f"  by hand: terraform init && apply   {statistics.median(hand):6.2f} s")
    print(f"  POST /workspaces -> succeeded       {statistics.median(control):6.2f} s")
    print(f"  ratio (control plane / by hand)     {statistics.median(control) / statistics.median(hand):6.2f}")
    print(f"throughput, {args.jobs} queued builds:")
    print(f"  1 daemon   {one:6.1f} jobs/min")
    print(f"  2 daemons  {two:6.1f} jobs/min")
    print(f"  ratio (2 daemons / 1 daemon)        {two / one:6.2f}")


if __name__ == "__main__":
    main()
