"""What a podman-debian workspace costs to start, against podman alone on the same image in the same run.

1. Start of a stopped workspace: `POST /api/v2/workspaces/{id}/builds {"transition": "start"}` until
   its container runs (the build succeeds once the runtime service has seen it running), against a
   bare `podman run -d` of the same image, already pulled. Rounds alternate; medians and the ratio
   are printed (issue 13's goal: <= 1.5x).
2. Create of a new workspace end to end: `POST /api/v2/workspaces` until its first build succeeded
   (import done beforehand), against the same bare `podman run`.

Everything is real: PostgreSQL, the API over loopback, an in-process daemon, terraform in its
sandbox, the appliance provider, the runtime service, podman (runc) and the registry. Run as root.
The base image comes from APPLIANCE_TEST_BASE_IMAGE (an OCI layout) or is built once under .cache/.

    .venv/bin/python benchmarks/workspace_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.db.migrate import apply_migrations  # noqa: E402 -- after the sys.path line above
from appliance.pki.ca import CertificateAuthority  # noqa: E402
from appliance.registry.tokens import ensure_signing_certificate  # noqa: E402
from tests.support.api import Api  # noqa: E402
from tests.support.appliance_provider import appliance_mirror_tree  # noqa: E402
from tests.support.images import base_image  # noqa: E402
from tests.support.podman_site import PodmanSite, podman_site  # noqa: E402
from tests.support.postgres import create_database, running_cluster, traversable_temp_dir  # noqa: E402
from tests.support.workspaces import REPO as SOURCES  # noqa: E402
from tests.support.workspaces import push, transition, wait_build, wait_version  # noqa: E402

TEMPLATE = SOURCES / "examples" / "templates" / "podman-debian"
# The same provisioner path with no container at all: what terraform, the sandbox and the queue cost.
MINIMAL = SOURCES / "examples" / "templates" / "minimal"
LIMITS = {"cpus": "1", "memory_mb": "512"}


def bare_run(site: PodmanSite, name: str) -> float:
    """`podman run -d` of the workspace image (pulled already), with the same limits; removed afterwards."""
    started = time.perf_counter()
    site.podman("run", "-d", "--name", name, "--cpus", LIMITS["cpus"], "--memory", f"{LIMITS['memory_mb']}m",
                "--entrypoint", "sleep", site.image, "infinity")
    elapsed = time.perf_counter() - started
    site.podman("rm", "--force", "--time", "0", name)
    return elapsed


def start_stopped(api: Api, workspace_id: str) -> float:
    assert transition(api, workspace_id, "stop")["status"] == "stopped"
    started = time.perf_counter()
    build = transition(api, workspace_id, "start")
    elapsed = time.perf_counter() - started
    assert build["status"] == "running", build["job"]["error"]
    return elapsed


def create(api: Api, name: str, template: str = "podman-debian") -> tuple[str, float]:
    started = time.perf_counter()
    parameters = LIMITS if template == "podman-debian" else {}
    created = api.post("/api/v2/workspaces", json={"template": template, "name": name, "parameters": parameters})
    assert created.status_code == 201, created.text
    build = wait_build(api, created.json()["latest_build"]["id"], timeout=600)
    elapsed = time.perf_counter() - started
    assert build["status"] == "running", build["job"]["error"]
    return created.json()["id"], elapsed


def measure(site: PodmanSite, rounds: int) -> dict[str, list[float]]:
    api = Api(site.control.url)
    api.create_first_user("bench")
    api = api.as_user(api.login("bench"))
    assert wait_version(api, "podman-debian", push(api, TEMPLATE, "podman-debian")["id"])["job"]["status"] == (
        "succeeded")
    assert wait_version(api, "minimal", push(api, MINIMAL, "minimal")["id"])["job"]["status"] == "succeeded"
    workspace_id, _ = create(api, "warmup")  # pulls the image once, so every later round finds it local
    floor_id, _ = create(api, "floor", "minimal")
    times: dict[str, list[float]] = {"bare": [], "start": [], "create": [], "floor": []}
    for index in range(rounds):
        times["bare"].append(bare_run(site, f"bench-bare-{index}"))
        times["start"].append(start_stopped(api, workspace_id))
        times["floor"].append(start_stopped(api, floor_id))
        created_id, elapsed = create(api, f"new{index}")
        times["create"].append(elapsed)
        transition(api, created_id, "delete")
    transition(api, workspace_id, "delete")
    transition(api, floor_id, "delete")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    scratch = traversable_temp_dir("workspace-start-")  # the sandbox uid must reach the mirror inside
    try:
        ca = CertificateAuthority(scratch / "pki")
        ca.init(b"benchmark-passphrase")
        ensure_signing_certificate(ca)
        mirror = appliance_mirror_tree(scratch / "mirror")
        with running_cluster() as cluster:
            conninfo = create_database(cluster.conninfo("postgres"), "bench")
            apply_migrations(conninfo)
            with podman_site(conninfo, scratch / "pki", mirror, base_image(), scratch / "site") as site:
                times = measure(site, args.rounds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bare, start, new, floor = (statistics.median(times[key]) for key in ("bare", "start", "create", "floor"))
    print(f"podman-debian workspace ({args.rounds} rounds, medians):")
    print(f"  bare podman run -d (same image)            {bare:6.2f} s")
    print(f"  start of a stopped workspace -> running     {start:6.2f} s   ratio {start / bare:6.2f} (goal <= 1.5)")
    print(f"  create of a new workspace -> running        {new:6.2f} s   ratio {new / bare:6.2f}")
    print(f"  start of a stopped minimal workspace        {floor:6.2f} s   (no container: terraform, sandbox, queue)")
    print(f"  container part of a start (start - minimal) {start - floor:6.2f} s   ratio {(start - floor) / bare:6.2f}")


if __name__ == "__main__":
    main()
