"""Bundle verification throughput against sha256sum of the same file, and peak memory.

What it measures: a 1 GB signed bundle (16 random 64 MB members) is verified by
`bundles.verify.verify_bundle` (signatures, then every member streamed and hashed) and, side
by side in the same run, hashed by coreutils' `sha256sum`. Rounds alternate and the median is
reported. The ratio verify/sha256sum throughput is the figure that matters (goal: >= 0.9).
Peak memory is the verifying process's max RSS, next to a process that only imports the
verifier, to show that verification does not grow with the bundle.

Run from the repository root:

    .venv/bin/python benchmarks/bundle_verify.py [--size-mb 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundles.build.assemble import assemble  # noqa: E402 -- after the sys.path line above
from tests.support.bundles import make_key, sign_bundle  # noqa: E402

# VmHWM, not ru_maxrss: Linux carries the parent's peak RSS into ru_maxrss across fork+exec.
VERIFY_SNIPPET = """
import re, sys, time
from pathlib import Path
from bundles.verify import TrustPolicy, verify_bundle
policy = TrustPolicy.from_keyring_file(Path(sys.argv[2]))
start = time.perf_counter()
if sys.argv[1] != "-":
    verify_bundle(Path(sys.argv[1]), policy, extract_to=Path(sys.argv[3]) if len(sys.argv) > 3 else None)
elapsed = time.perf_counter() - start
peak_kb = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)
print(elapsed, peak_kb)
"""


def make_bundle(work: Path, size_mb: int) -> tuple[Path, Path]:
    stage = work / "stage" / "images" / "bench"
    stage.mkdir(parents=True)
    rng = random.Random(7)  # noqa: S311 -- filler bytes for a benchmark, not secrets
    chunk_mb = 64
    for index in range(max(1, size_mb // chunk_mb)):
        (stage / f"blob-{index:02d}").write_bytes(rng.randbytes(chunk_mb << 20))
    created = datetime.now(UTC)
    bundle = assemble(work / "stage", work / "dist", version="9.9.9", created=created,
                      expires_after=timedelta(days=30), min_upgrade_from="0.0.0", build_info={})
    key = make_key(work, "bench")
    sign_bundle(bundle, key)
    keyring = work / "release.pub.asc"
    keyring.write_bytes(key.public)
    return bundle, keyring


def time_sha256sum(bundle: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["sha256sum", str(bundle)], check=True, capture_output=True)
    return time.perf_counter() - start


def run_verifier(bundle: Path | str, keyring: Path, extract_to: Path | None = None) -> tuple[float, int]:
    args = [sys.executable, "-c", VERIFY_SNIPPET, str(bundle), str(keyring)] + ([str(extract_to)] if extract_to else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=REPO).stdout.split()
    return float(out[0]), int(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        print("sha256sum is missing (coreutils).", file=sys.stderr)
        return 1
    scratch = REPO / ".cache" if (REPO / ".cache").exists() else None
    with tempfile.TemporaryDirectory(prefix="bundle-bench-", dir=scratch) as tmp:
        work = Path(tmp)
        print(f"building a {args.size_mb} MB signed bundle ...", file=sys.stderr)
        bundle, keyring = make_bundle(work, args.size_mb)
        size = bundle.stat().st_size
        time_sha256sum(bundle)  # warm the page cache so both read from memory
        hashes, verifies, extracts, peaks = [], [], [], []
        for round_number in range(1, args.rounds + 1):
            hashes.append(time_sha256sum(bundle))
            seconds, peak = run_verifier(bundle, keyring)
            verifies.append(seconds)
            peaks.append(peak)
            target = work / f"extracted-{round_number}"
            extracts.append(run_verifier(bundle, keyring, target)[0])
            shutil.rmtree(target)
            print(f"round {round_number}: sha256sum {hashes[-1]:.2f}s, verify {verifies[-1]:.2f}s, "
                  f"verify+extract {extracts[-1]:.2f}s", file=sys.stderr)
        _, idle_peak = run_verifier("-", keyring)
    mb = size / 1e6
    sha, ver, ext = (statistics.median(v) for v in (hashes, verifies, extracts))
    print(f"bundle: {mb:.0f} MB, {args.rounds} rounds, medians; page cache warm")
    print(f"{'':<26}{'seconds':>9}{'MB/s':>9}{'ratio':>8}")
    print(f"{'sha256sum':<26}{sha:>9.2f}{mb / sha:>9.0f}{1:>8.2f}")
    print(f"{'verify':<26}{ver:>9.2f}{mb / ver:>9.0f}{sha / ver:>8.2f}")
    print(f"{'verify + extract':<26}{ext:>9.2f}{mb / ext:>9.0f}{sha / ext:>8.2f}")
    print(f"peak RSS: verify {max(peaks) / 1024:.0f} MB; the same process only importing the verifier "
          f"{idle_peak / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
