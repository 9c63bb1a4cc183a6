"""What terraform's sandbox adds to one terraform command: `terraform version` bare and in the sandbox.

Run as root from the repository root (needs bubblewrap and terraform):

    PYTHONPATH=. .venv/bin/python benchmarks/sandbox_overhead.py [--rounds 20]

Prints the mean wall time of each and the difference. For the whole of a build (which now unpacks
its providers from the mirror in every job, no shared plugin cache), see build_overhead.py.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from appliance.provisionerd.sandbox import SANDBOX_UID_BASE, Sandbox


def _mean_ms(run: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        run()
    return (time.perf_counter() - started) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    root = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    try:
        root.chmod(0o711)
        (root / "terraform.rc").write_text("")
        sandbox = Sandbox(SANDBOX_UID_BASE + 999, root / "terraform.rc")
        work = sandbox.prepare(root / "jobs", "bench")
        sandbox.hand_over(work)
        bare = _mean_ms(lambda: subprocess.run(["terraform", "version"], capture_output=True, check=True), rounds)
        boxed = _mean_ms(lambda: sandbox.run(work, ["terraform", "version"], {}, timeout=60), rounds)
        sandbox.clean(work)
        print(f"terraform version x{rounds}: bare {bare:.1f} ms, sandboxed {boxed:.1f} ms, "
              f"sandbox overhead {boxed - bare:.1f} ms per command; sandboxed / bare = {boxed / bare:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
