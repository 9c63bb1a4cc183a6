"""Throughput and latency of `GET /api/v2/users/me` against a bare Flask endpoint, under gunicorn.

What it measures: requests/s and p50/p99 latency of an authenticated `GET /api/v2/users/me`
(`Authorization: Bearer <API token>`) served by `appliance.wsgi:app`, and the same figures
for a bare Flask route returning a constant (benchmarks/bare_app.py), and for the same route
plus one pooled `SELECT 1` (the ceiling for any endpoint that checks its token in PostgreSQL).
All run under gunicorn with identical settings in the same run, so the printed ratios
(x / bare) show what each adds per request: token lookup, the query, JSON, headers.

How: a throwaway PostgreSQL 15 cluster is started and migrated, two gunicorn servers are
started on free loopback ports, the first user and an API token are created, both endpoints
are checked for the right answer, then `wrk --latency` drives them in interleaved rounds
(bare, query, appliance, bare, ...). Any non-2xx response or socket error fails the run.
Everything is stopped on exit, error or Ctrl+C.

On a shared 2-core host the same server's req/s swings by a third from one run to the next, so
the figures are made to survive that: with 2 or more CPUs the servers run on all but the last
CPU and wrk on the last (`--no-pin` to let them share), so wrk never takes the servers' CPU; the
ratio is taken per round, between runs seconds apart, and the median of those ratios reported
with their spread; and each run also records the CPU time the server's processes spent per
request (from /proc), which other tenants of the host do not inflate the way they do wall time.

This is a report, not a test: nothing here asserts on timings.

Run from the repository root (needs Debian's `wrk` package and the postgresql-15 server):

    .venv/bin/python benchmarks/api_throughput.py --duration 10 --rounds 3
    .venv/bin/python benchmarks/api_throughput.py --json > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "benchmarks"
for _path in (REPO_ROOT, BENCH_DIR):  # tests.support and bare_app, however this is started
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bare_app import BODY as BARE_BODY  # noqa: E402
from bare_app import PATH as BARE_PATH  # noqa: E402
from bare_app import POSTGRES_ENV as BARE_POSTGRES_ENV  # noqa: E402
from bare_app import QUERY_PATH as BARE_QUERY_PATH  # noqa: E402

from appliance.db.migrate import apply_migrations  # noqa: E402
from tests.support.postgres import (  # noqa: E402
    conninfo_url,
    create_database,
    free_port,
    running_cluster,
)

ME_PATH = "/api/v2/users/me"
BARE_APP = "bare_app:app"  # imported from BENCH_DIR through gunicorn's --pythonpath
USERNAME = "bench"
PASSWORD = "quiet-harbor-lantern-42"  # noqa: S105 -- a throwaway user in a throwaway cluster
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION_RE = r"([\d.]+)(us|ms|s|m|h)"


class BenchmarkError(Exception):
    """The benchmark cannot produce a trustworthy figure; the message says why."""


@dataclass(frozen=True)
class Settings:
    duration: int
    warmup: int
    connections: int
    wrk_threads: int
    rounds: int
    workers: int
    worker_threads: int
    pin: bool = False

    def gunicorn_args(self) -> list[str]:
        return ["--workers", str(self.workers), "--threads", str(self.worker_threads),
                "--worker-class", "gthread", "--log-level", "warning"]

    def describe(self) -> str:
        placement = (f"; servers on CPU(s) {server_cpus()}, wrk alone on CPU {wrk_cpu()}" if self.pin
                     else "; servers and wrk share every CPU")
        return (f"gunicorn: {self.workers} workers x {self.worker_threads} threads (gthread); "
                f"wrk: {self.wrk_threads} threads, {self.connections} connections, "
                f"{self.duration}s x {self.rounds} rounds (+{self.warmup}s warm-up){placement}")


def server_cpus() -> str:
    """Every CPU but the last, as taskset writes a list."""
    cpus = sorted(os.sched_getaffinity(0))
    return ",".join(str(cpu) for cpu in cpus[:-1])


def wrk_cpu() -> str:
    return str(max(os.sched_getaffinity(0)))


def pinned(argv: list[str], cpus: str, pin: bool) -> list[str]:
    return ["taskset", "--cpu-list", cpus, *argv] if pin else argv


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: tuple[str, ...] = ()
    server_group: int = 0  # the gunicorn arbiter's process group: it and its workers


@dataclass(frozen=True)
class WrkResult:
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu_us_per_request: float = 0.0


# ---------------------------------------------------------------- wrk


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchmarkError("wrk is not installed. Install Debian's package: "
                             "apt-get install -y wrk")
    return path


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def _percentile(output: str, percent: int) -> float:
    match = re.search(rf"^\s*{percent}(?:\.0+)?%\s+{_DURATION_RE}\s*$", output, re.MULTILINE)
    if match is None:
        raise BenchmarkError(f"wrk printed no {percent}% latency (was --latency passed?):\n"
                             f"{output}")
    return _to_ms(match.group(1), match.group(2))


def parse_wrk(output: str) -> WrkResult:
    """Pick requests/s, p50, p99, totals and error counts out of `wrk --latency` output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    if rate is None or total is None:
        raise BenchmarkError(f"Cannot read wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        output)
    return WrkResult(
        requests_per_sec=float(rate.group(1)),
        p50_ms=_percentile(output, 50),
        p99_ms=_percentile(output, 99),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def run_wrk(target: Target, settings: Settings, seconds: int) -> WrkResult:
    argv = [require_wrk(), "--latency", "--timeout", "5s", "-t", str(settings.wrk_threads),
            "-c", str(settings.connections), "-d", f"{seconds}s"]
    for header in target.headers:
        argv += ["-H", header]
    cpu_before = group_cpu_seconds(target.server_group)
    done = subprocess.run(pinned([*argv, target.url], wrk_cpu(), settings.pin), capture_output=True,
                          text=True, check=False)
    cpu_spent = group_cpu_seconds(target.server_group) - cpu_before
    if done.returncode != 0:
        raise BenchmarkError(f"wrk failed on {target.name} (exit {done.returncode}):\n"
                             f"{done.stdout}{done.stderr}")
    result = parse_wrk(done.stdout)
    if result.requests:
        result = replace(result, server_cpu_us_per_request=cpu_spent * 1e6 / result.requests)
    if result.non_2xx or result.socket_errors:
        raise BenchmarkError(f"{target.name} answered {result.non_2xx} non-2xx responses and had "
                             f"{result.socket_errors} socket errors under load; figures would be "
                             f"meaningless. wrk said:\n{done.stdout}")
    return result


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(group: int) -> float:
    """User + system CPU seconds of the live processes in process group `group` (0: none)."""
    total = 0
    for entry in Path("/proc").iterdir() if group else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while listed
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


# ---------------------------------------------------------------- servers


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _wait_until_answers(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"gunicorn exited ({process.returncode}) during start:\n"
                                 f"{_tail(log_path)}")
        try:
            requests.get(url, timeout=2)
            return  # any HTTP answer means a worker is serving
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy starting
            time.sleep(0.2)
    raise BenchmarkError(f"gunicorn did not answer {url} within {START_TIMEOUT:.0f}s:\n"
                         f"{_tail(log_path)}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # the arbiter and its workers
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def gunicorn(app: str, settings: Settings, env: dict[str, str],
             log_path: Path) -> Iterator[tuple[str, int]]:
    """Serve `app` with gunicorn on a free loopback port; yield its base URL and process group."""
    port = free_port()
    argv = pinned([sys.executable, "-m", "gunicorn", *settings.gunicorn_args(),
                   "--bind", f"127.0.0.1:{port}", "--pythonpath", str(BENCH_DIR), app],
                  server_cpus(), settings.pin)
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answers(base + "/", process, log_path)
        yield base, process.pid  # start_new_session: the arbiter leads its own group
    finally:
        _stop_group(process)


def appliance_env(postgres_url: str, access_url: str, work: Path) -> dict[str, str]:
    config_file = work / "appliance.toml"
    config_file.write_text("")  # ignore any /etc/appliance/appliance.toml on this host
    return {**os.environ, "APPLIANCE_CONFIG": str(config_file),
            "APPLIANCE_POSTGRES_URL": postgres_url, "APPLIANCE_ACCESS_URL": access_url,
            "APPLIANCE_LOG_LEVEL": "warning", "APPLIANCE_DATA_DIR": str(work / "data")}


# ---------------------------------------------------------------- setup and checks


def _expect(response: requests.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise BenchmarkError(f"{what}: expected {status}, got {response.status_code}: "
                             f"{response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def provision_token(base: str) -> str:
    """Create the first user, log in, and return a new API token for that user."""
    api = f"{base}/api/v2"
    _expect(requests.post(f"{api}/users/first", timeout=30, json={
        "username": USERNAME, "email": f"{USERNAME}@example.org", "password": PASSWORD}),
        201, "POST /users/first")
    login = _expect(requests.post(f"{api}/users/login", timeout=30, json={
        "username": USERNAME, "password": PASSWORD}), 201, "POST /users/login")
    session = {"Authorization": f"Bearer {login['session_token']}"}
    created = _expect(requests.post(f"{api}/users/me/keys/tokens", headers=session, timeout=30,
                                    json={"token_name": "bench"}),
                      201, "POST /users/me/keys/tokens")
    token: str = created["key"]
    return token


def verify_targets(appliance: Target, *bare: Target) -> None:
    """Abort unless every endpoint gives the right answer before anything is timed."""
    headers = dict(h.split(": ", 1) for h in appliance.headers)
    me = _expect(requests.get(appliance.url, headers=headers, timeout=30), 200, f"GET {ME_PATH}")
    if me.get("username") != USERNAME:
        raise BenchmarkError(f"GET {ME_PATH} returned user {me.get('username')!r}, "
                             f"not {USERNAME!r}")
    for target in bare:
        response = requests.get(target.url, timeout=30)
        if response.status_code != 200 or response.text != BARE_BODY:
            raise BenchmarkError(f"bare app answered {response.status_code} on {target.url}: "
                                 f"{response.text[:200]}")


def server_log_problems(log_path: Path) -> list[str]:
    """Lines in a gunicorn log that look like trouble (errors, tracebacks, worker timeouts)."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    markers = ("error", "traceback", "critical", "timeout", "exception")
    return [line for line in text.splitlines() if any(m in line.lower() for m in markers)]


# ---------------------------------------------------------------- measuring and reporting


def measure(targets: list[Target], settings: Settings) -> dict[str, list[WrkResult]]:
    """Warm each target up, then run interleaved rounds: every target once per round."""
    for target in targets:
        if settings.warmup:
            progress(f"warm-up {target.name} ({settings.warmup}s)")
            run_wrk(target, settings, settings.warmup)
    results: dict[str, list[WrkResult]] = {t.name: [] for t in targets}
    for round_no in range(1, settings.rounds + 1):
        for target in targets:
            result = run_wrk(target, settings, settings.duration)
            results[target.name].append(result)
            progress(f"round {round_no}/{settings.rounds} {target.name:<9} "
                     f"{result.requests_per_sec:>9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                     f"p99 {result.p99_ms:7.2f} ms  server CPU "
                     f"{result.server_cpu_us_per_request:6.0f} us/request  ({result.requests} requests)")
    return results


def median_of(rounds: list[WrkResult]) -> dict[str, float]:
    return {
        "requests_per_sec": statistics.median(r.requests_per_sec for r in rounds),
        "p50_ms": statistics.median(r.p50_ms for r in rounds),
        "p99_ms": statistics.median(r.p99_ms for r in rounds),
        "server_cpu_us_per_request": statistics.median(r.server_cpu_us_per_request for r in rounds),
    }


def paired_ratios(rounds: list[WrkResult], baseline: list[WrkResult]) -> dict[str, float]:
    """req/s over the baseline's, round by round (runs seconds apart): median, lowest, highest."""
    ratios = [r.requests_per_sec / b.requests_per_sec for r, b in zip(rounds, baseline, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def cpu_ratio(rounds: list[WrkResult], baseline: list[WrkResult]) -> float:
    """Requests per server CPU-second, over the baseline's: the median of each's CPU per request."""
    theirs = statistics.median(r.server_cpu_us_per_request for r in rounds)
    ours = statistics.median(b.server_cpu_us_per_request for b in baseline)
    return ours / theirs if theirs else 0.0


def summarise(results: dict[str, list[WrkResult]], settings: Settings) -> dict[str, Any]:
    bare, app = median_of(results["bare"]), median_of(results["appliance"])
    query = median_of(results["query"])
    return {
        "endpoint": f"GET {ME_PATH}",
        "settings": asdict(settings),
        "median": {"bare": bare, "query": query, "appliance": app},
        "ratio_appliance_over_bare": {key: app[key] / bare[key] for key in bare},
        "ratio_query_over_bare": {key: query[key] / bare[key] for key in bare},
        "paired_req_s_ratio_appliance_over_bare": paired_ratios(results["appliance"], results["bare"]),
        "paired_req_s_ratio_query_over_bare": paired_ratios(results["query"], results["bare"]),
        "req_per_cpu_second_ratio_appliance_over_bare": cpu_ratio(results["appliance"], results["bare"]),
        "req_per_cpu_second_ratio_query_over_bare": cpu_ratio(results["query"], results["bare"]),
        "rounds": {name: [asdict(r) for r in rounds] for name, rounds in results.items()},
    }


def print_table(summary: dict[str, Any], out: TextIO) -> None:
    medians, ratio = summary["median"], summary["ratio_appliance_over_bare"]
    rows = [("bare (constant)", medians["bare"]), ("bare + SELECT 1 (pooled)", medians["query"]),
            (summary["endpoint"], medians["appliance"])]
    header = (f"{'target (median of rounds)':<28} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} "
              f"{'server CPU us/req':>18}")
    print(f"\n{header}", file=out)
    for label, row in rows:
        print(f"{label:<28} {row['requests_per_sec']:>10.1f} {row['p50_ms']:>9.2f} "
              f"{row['p99_ms']:>9.2f} {row['server_cpu_us_per_request']:>18.0f}", file=out)
    ceiling = summary["ratio_query_over_bare"]
    print(f"{'ratio query / bare':<28} {ceiling['requests_per_sec']:>10.3f} "
          f"{ceiling['p50_ms']:>9.2f} {ceiling['p99_ms']:>9.2f}", file=out)
    print(f"{'ratio appliance / bare':<28} {ratio['requests_per_sec']:>10.3f} "
          f"{ratio['p50_ms']:>9.2f} {ratio['p99_ms']:>9.2f}", file=out)
    print("\nreq/s ratio to bare, round by round (median [lowest-highest]); requests per server CPU-second:",
          file=out)
    for name in ("query", "appliance"):
        paired, cpu = summary[f"paired_req_s_ratio_{name}_over_bare"], \
            summary[f"req_per_cpu_second_ratio_{name}_over_bare"]
        print(f"  {name:<10} {paired['median']:.3f} [{paired['min']:.3f}-{paired['max']:.3f}]; "
              f"per CPU-second {cpu:.3f}", file=out)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed seconds per target (2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (4)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let wrk and the servers share every CPU (by default, with 2+ CPUs, "
                             "wrk runs alone on the last one)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON on stdout (the table goes to stderr)")
    args = parser.parse_args(argv)
    if min(args.duration, args.connections, args.wrk_threads, args.rounds, args.workers,
           args.threads) < 1 or args.warmup < 0 or args.connections < args.wrk_threads:
        parser.error("counts and durations must be positive, and connections >= wrk threads")
    settings = Settings(duration=args.duration, warmup=args.warmup, connections=args.connections,
                        wrk_threads=args.wrk_threads, rounds=args.rounds, workers=args.workers,
                        worker_threads=args.threads,
                        pin=args.pin and len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset") is not None)
    return settings, args.json


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up the same way Ctrl+C does


def run(settings: Settings, stack: ExitStack) -> tuple[dict[str, Any], list[str]]:
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="appliance-bench-")))
    progress("starting PostgreSQL")
    cluster = stack.enter_context(running_cluster())
    conninfo = create_database(cluster.conninfo("postgres"), "bench")
    apply_migrations(conninfo)
    access_url = "http://127.0.0.1"  # not used by /users/me; only needs to be a valid URL
    env = appliance_env(conninfo_url(conninfo), access_url, work)
    progress(f"starting gunicorn twice: {settings.describe()}")
    bare_log = work / "bare.log"
    bare_env = {**os.environ, BARE_POSTGRES_ENV: conninfo}
    bare_base, bare_group = stack.enter_context(gunicorn(BARE_APP, settings, bare_env, bare_log))
    app_log = work / "appliance.log"
    app_base, app_group = stack.enter_context(gunicorn("appliance.wsgi:app", settings, env, app_log))
    token = provision_token(app_base)
    bare = Target("bare", bare_base + BARE_PATH, server_group=bare_group)
    query = Target("query", bare_base + BARE_QUERY_PATH, server_group=bare_group)
    appliance = Target("appliance", app_base + ME_PATH, (f"Authorization: Bearer {token}",),
                       server_group=app_group)
    verify_targets(appliance, bare, query)
    load_before = os.getloadavg()[0]
    results = measure([bare, query, appliance], settings)
    summary = summarise(results, settings)
    summary["host"] = {"cpus": os.cpu_count(), "load_1min_before": load_before,
                       "load_1min_after": os.getloadavg()[0]}
    return summary, server_log_problems(app_log)


def main(argv: list[str] | None = None) -> int:
    settings, as_json = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        require_wrk()
        with ExitStack() as stack:
            summary, problems = run(settings, stack)
            progress("stopping servers and PostgreSQL")
    except BenchmarkError as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; servers and PostgreSQL stopped", file=sys.stderr)
        return 130
    report(summary, problems, settings, as_json)
    return 0


def report(summary: dict[str, Any], problems: list[str], settings: Settings, as_json: bool) -> None:
    out = sys.stderr if as_json else sys.stdout
    host = summary["host"]
    print(f"\n{settings.describe()}", file=out)
    print(f"host: {host['cpus']} CPUs, 1-min load average {host['load_1min_before']:.2f} before, "
          f"{host['load_1min_after']:.2f} after",
          file=out)
    print_table(summary, out)
    summary["server_log_problems"] = problems
    if problems:
        print(f"\nappliance server log: {len(problems)} suspicious line(s), first ones:",
              file=out)
        for line in problems[:10]:
            print(f"  {line}", file=out)
    if as_json:
        json.dump(summary, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    sys.exit(main())
