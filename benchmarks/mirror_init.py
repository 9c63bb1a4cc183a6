"""`terraform init` through the appliance's HTTPS network mirror, against a local filesystem mirror.

What it measures: wall time of `terraform init` (fresh working directory, no plugin cache) for
a template needing three providers, installed (a) from the network mirror served over HTTPS by
the control plane in embedded mode (cheroot + Flask, internal CA, real PostgreSQL) and (b) from
the same tree as a `filesystem_mirror`. Rounds alternate; medians and the ratio (a)/(b) are
printed. An installed appliance serves the tree from nginx as static files, so (a) is the slow case.

Run from the repository root (needs terraform on PATH; builds three providers with PyInstaller):

    .venv/bin/python benchmarks/mirror_init.py [--rounds 5]
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

from appliance.app import create_app  # noqa: E402 -- after the sys.path line above
from appliance.config import Address  # noqa: E402
from appliance.db.database import Database  # noqa: E402
from appliance.db.migrate import apply_migrations  # noqa: E402
from appliance.pki.ca import CertificateAuthority, IssueRequest  # noqa: E402
from appliance.server.tls import TlsListener  # noqa: E402
from mirror.build import build_mirror  # noqa: E402
from tests.support.postgres import create_database, free_port, running_cluster  # noqa: E402
from tests.support.provider_zips import real_provider_zip  # noqa: E402
from tests.support.server import make_config  # noqa: E402

TYPES = ("alpha", "beta", "gamma")


def template() -> str:
    required = "\n".join(f'    {t} = {{ source = "registry.terraform.io/bench/{t}", version = "1.0.0" }}'
                         for t in TYPES)
    data = "\n".join(f'data "{t}_greeting" "g" {{ name = "bench" }}' for t in TYPES)
    return f"terraform {{\n  required_providers {{\n{required}\n  }}\n}}\n{data}\n"


def timed_init(work: Path, cli_config: str, env: dict[str, str]) -> float:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "main.tf").write_text(template())
    (work / "cli.tfrc").write_text(cli_config)
    started = time.perf_counter()
    result = subprocess.run(["terraform", "init", "-input=false", "-no-color"], cwd=work, capture_output=True,
                            text=True, env={**env, "TF_CLI_CONFIG_FILE": str(work / "cli.tfrc")}, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"terraform init failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("terraform") is None:
        print("terraform is not on PATH.", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="mirror-bench-") as tmp, running_cluster() as cluster:
        work = Path(tmp)
        print("building three providers with PyInstaller ...", file=sys.stderr)
        for kind in TYPES:
            real_provider_zip(work / "src" / "registry.terraform.io/bench" / kind, kind, "1.0.0")
        build_mirror(work / "tree", [work / "src"], [], None)
        size = sum(p.stat().st_size for p in (work / "src").rglob("*.zip"))
        ca = CertificateAuthority(work / "pki")
        ca.init(b"benchmark-passphrase")
        ca.issue(IssueRequest("web", ("localhost",), ("127.0.0.1",)))
        conninfo = create_database(cluster.conninfo("postgres"), "bench")
        apply_migrations(conninfo)
        port = free_port()
        config = make_config(port=port, postgres_url=conninfo, access_url=f"https://localhost:{port}",
                             mirror_dir=work / "tree", log_level="warning")
        db = Database(conninfo)
        listener = TlsListener(Address("127.0.0.1", port), create_app(config, db), ca.layout.live_fullchain("web"),
                               ca.layout.live_key("web"))
        listener.start()
        env = {**os.environ, "SSL_CERT_FILE": str(ca.layout.trust_bundle), "TF_IN_AUTOMATION": "1",
               "CHECKPOINT_DISABLE": "1", "TF_PLUGIN_CACHE_DIR": ""}
        network = f'provider_installation {{\n  network_mirror {{ url = "https://localhost:{port}/tf/mirror/" }}\n}}\n'
        local = f'provider_installation {{\n  filesystem_mirror {{ path = "{work / "tree/mirror"}" }}\n}}\n'
        try:
            timed_init(work / "warm", network, env)  # first run warms the page cache and the server
            remote, disk = [], []
            for round_number in range(1, args.rounds + 1):
                remote.append(timed_init(work / "net", network, env))
                disk.append(timed_init(work / "fs", local, env))
                print(f"round {round_number}: network mirror {remote[-1]:.2f}s, filesystem mirror {disk[-1]:.2f}s",
                      file=sys.stderr)
        finally:
            listener.stop()
            db.close()
    net, fs = statistics.median(remote), statistics.median(disk)
    print(f"terraform init, 3 providers ({size / 1e6:.0f} MB of archives), {args.rounds} rounds, medians")
    print(f"  network mirror over HTTPS (embedded control plane)  {net:6.2f} s")
    print(f"  filesystem_mirror (local disk)                      {fs:6.2f} s")
    print(f"  ratio network / filesystem                          {net / fs:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
