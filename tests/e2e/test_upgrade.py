"""Upgrades on the offline host: v1 (the session's `release`) installed once, then bundles that must change
nothing, upgrades killed at named steps and one whose console cannot start, each ending on a working
appliance with every row kept, then the upgrade that converges, a rollback and the benchmarked upgrade.

The cases run in order on ONE host, each starting from v1 (docs/adr/0035-upgrade-journal.md: a copy of
the installed host per case costs a copy and a boot each, and every case here ends on v1 anyway), in one
module fixture that records what each did; the tests assert on that record. v2 is made from v1's bundle
in seconds (tests/e2e/derived_bundles.py), never by a second build.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance import __version__ as checkout_version
from bundles.downgrade import authorize, write_signed
from tests.e2e.appliance_host import (
    PASSWORD,
    REPO,
    VERSION,
    Release,
    explain,
    health_problems,
    https,
    install,
    login,
    prepare,
    push_template,
    wait_job,
)
from tests.e2e.derived_bundles import NEXT, PATCH, derived_bundle
from tests.support.nspawn import OfflineHost
from tests.support.nspawn import offline_host as boot_offline_host

pytestmark = pytest.mark.timeout(3000)

INSTALLER = "/root/installer/appliance-installer"
# Audit rows of everything but the installer's own doings (maintenance on and off, release records), which
# an upgrade adds by design.
COUNTS = ("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM workspaces), "
          "(SELECT count(*) FROM workspace_builds), "
          "(SELECT count(*) FROM audit_logs WHERE resource_type NOT IN ('maintenance', 'release'))")
# Polls /healthz and the API from inside the host every 0.2 s; prints the longest span each saw failing.
POLLER = """
import json, ssl, sys, time, urllib.request
context = ssl.create_default_context(cafile="/var/lib/appliance/pki/ca-bundle.pem")
worst, failing = {}, {}
stop = time.monotonic() + float(sys.argv[1])
while time.monotonic() < stop:
    for name, path in (("healthz", "/healthz"), ("api", "/api/v2/buildinfo")):
        now = time.monotonic()
        try:
            with urllib.request.urlopen("https://appliance-host" + path, context=context, timeout=2) as r:
                ok = r.status == 200
        except Exception:
            ok = False
        if ok:
            failing.pop(name, None)
        else:
            failing.setdefault(name, now)
            worst[name] = max(worst.get(name, 0.0), now - failing[name])
    with open("/root/poller.json", "w") as out:
        json.dump(worst, out)
    time.sleep(0.2)
"""


@dataclass
class Case:
    """One installer run (and the command that recovered after it), and the host right after."""
    name: str
    result: Any
    recovery: Any | None
    seconds: float
    counts_before: list[int]
    counts_after: list[int]
    version: str
    healthy: bool
    login_works: bool
    log: str


@dataclass
class Upgraded:
    host: OfflineHost
    plan: dict[str, Any]
    cases: dict[str, Case] = field(default_factory=dict)
    refused: dict[str, tuple[Any, bool]] = field(default_factory=dict)
    migration: str = ""
    downtime: dict[str, float] = field(default_factory=dict)
    receipt: dict[str, Any] = field(default_factory=dict)
    on_v2: tuple[str, str] = ("", "")   # rows in v2's new table; the workspace's start build's status, on v2
    downgrade_refused: Any = None       # PATCH -> v2 without an authorization
    health_on_v2: list[str] = field(default_factory=list)  # `appliance health --local`: sections not ok on v2


def _on_v2(host: OfflineHost) -> tuple[str, str]:
    probe = host.run("runuser", "-u", "postgres", "--", "psql", "-d", "appliance", "-tAc",
                     "SELECT count(*) FROM upgrade_probe")
    return probe.stdout.strip() or probe.stderr, str(_start_workspace(host, login(host))["status"])


def _journal_times(host: OfflineHost) -> str:
    """The last journal's steps: state, seconds doing and undoing each."""
    journal = json.loads(host.read_text("/var/lib/appliance/installer/journal.json"))
    return f"journal {journal['kind']} {journal['outcome']}: " + ", ".join(
        f"{s['name']} {s['state']} {s['seconds']:.1f}+{s['undo_seconds']:.1f}s" for s in journal["steps"])


def _counts(host: OfflineHost) -> list[int]:
    result = host.run("runuser", "-u", "postgres", "--", "psql", "-d", "appliance", "-tA", "-F", " ", "-c", COUNTS)
    assert result.returncode == 0, result.stderr
    return [int(n) for n in result.stdout.split()]


def _version(host: OfflineHost) -> str:
    status, body = https(host, "GET", "/api/v2/buildinfo")
    return str(json.loads(body)["version"]) if status == 200 else f"HTTP {status}"


def _login_works(host: OfflineHost) -> bool:
    return https(host, "POST", "/api/v2/users/login", {"username": "admin", "password": PASSWORD})[0] == 201


def _untouched(host: OfflineHost) -> bool:
    """v1 current, no other release extracted, no journal: a refused bundle changed nothing."""
    return host.sh(f"test \"$(readlink /opt/appliance/current)\" = releases/{VERSION} && "
                   f"! test -e /opt/appliance/releases/{NEXT} && ! test -e /var/lib/appliance/installer/journal.json"
                   ).returncode == 0


def _run(host: OfflineHost, command: str, kill_at: str = "") -> Any:
    env = f"APPLIANCE_INSTALLER_KILL_AT={kill_at} " if kill_at else ""
    return host.sh(f"cd /root && {env}{INSTALLER} {command}", timeout=1800)


def _case(upgraded: Upgraded, name: str, command: str, *, kill_at: str = "", recover: str = "") -> Case:
    host = upgraded.host
    before = _counts(host)
    started = time.monotonic()
    result = _run(host, command, kill_at)
    recovery = _run(host, recover) if recover else None
    seconds = time.monotonic() - started
    case = Case(name, result, recovery, seconds, before, _counts(host), _version(host),
                https(host, "GET", "/healthz") == (200, "OK"), _login_works(host), explain(host, result))
    print(f"case {name}: exit {result.returncode}, then {recover or '-'}: "
          f"{recovery.returncode if recovery else '-'}; {seconds:.0f}s; now {case.version}; {_journal_times(host)}")
    upgraded.cases[name] = case
    return case


def _seed(host: OfflineHost, setup_output: str, work: Path) -> None:
    """The first user, a second one, the minimal template and a running workspace (audit rows come with them)."""
    token_match = re.search(r"/setup\?token=(\S+)", setup_output)
    assert token_match, setup_output
    user = {"username": "admin", "email": "admin@example.org", "password": PASSWORD,
            "setup_token": token_match.group(1)}
    assert https(host, "POST", "/api/v2/users/first", user)[0] == 201
    token = login(host)
    second = {"username": "dev", "email": "dev@example.org", "password": PASSWORD}
    status, body = https(host, "POST", "/api/v2/users", second, token)
    assert status == 201, body
    push_template(host, token, "minimal", REPO / "examples/templates/minimal", work)
    _start_workspace(host, token)


def _start_workspace(host: OfflineHost, token: str) -> dict[str, Any]:
    """Create `dev` (or start it again) and wait for the build; the build as the API shows it."""
    status, body = https(host, "GET", "/api/v2/workspaces?name=dev", token=token)
    found = json.loads(body)["workspaces"] if status == 200 else []
    if found:
        status, body = https(host, "POST", f"/api/v2/workspaces/{found[0]['id']}/builds", {"transition": "start"},
                             token)
        queued = json.loads(body)
    else:
        status, body = https(host, "POST", "/api/v2/workspaces", {"template": "minimal", "name": "dev"}, token)
        queued = json.loads(body)["latest_build"]
    assert status == 201, body
    return wait_job(host, f"/api/v2/workspacebuilds/{queued['id']}", token)


def _refusals(upgraded: Upgraded, bundles: dict[str, Path]) -> None:
    host = upgraded.host
    for name in ("tampered", "older", "expired"):
        host.copy_in(bundles[name], f"/root/{name}.bundle")
        result = _run(host, f"upgrade {name}.bundle --yes")
        upgraded.refused[name] = (result, _untouched(host))
        print(f"refused {name}: exit {result.returncode}")


@pytest.fixture(scope="module")
def upgraded(release: Release, baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upgraded]:
    work = tmp_path_factory.mktemp("upgrade")
    phase = time.monotonic()
    bundles = {name: derived_bundle(release, work / name, name) for name in
               ("v2", "broken", "badmigration", "patch", "tampered", "older", "expired")}
    print(f"derived bundles made in {time.monotonic() - phase:.0f}s")
    with boot_offline_host(baseline, work / "host") as host:
        host.delegate_cgroup_controllers()
        phase = time.monotonic()
        prepare(host, release)
        result, seconds = install(host)
        assert result.returncode == 0, explain(host, result)
        print(f"v1 installed in {seconds:.0f}s")
        _seed(host, result.stdout, work)
        print(f"seeded in {time.monotonic() - phase - seconds:.0f}s")
        for name in ("v2", "broken", "badmigration", "patch"):
            host.copy_in(bundles[name], f"/root/{name}.bundle")
        plan = _run(host, "upgrade v2.bundle --plan --output json")
        assert plan.returncode == 0, explain(host, plan)
        upgraded = Upgraded(host, json.loads(plan.stdout)["plan"])
        _refusals(upgraded, bundles)
        _case(upgraded, "kill-after-backup", "upgrade v2.bundle --yes", kill_at="backup", recover="status")
        _case(upgraded, "kill-mid-migration", "upgrade v2.bundle --yes", kill_at="migrate", recover="rollback --yes")
        _case(upgraded, "kill-after-switch", "upgrade v2.bundle --yes", kill_at="switch", recover="status")
        _case(upgraded, "health-gate", "upgrade broken.bundle --yes")
        _case(upgraded, "failed-migration", "upgrade badmigration.bundle --yes")
        _benchmarked(upgraded)   # after all those, the same command converges to v2
        upgraded.on_v2 = _on_v2(host)
        upgraded.health_on_v2 = health_problems(host)
        _case(upgraded, "rollback", "rollback --yes")
        _console_apply(upgraded, bundles["v2"])   # v1 -> v2 again, this time by the root path unit
        _case(upgraded, "to-patch", "upgrade patch.bundle --yes")
        _downgrade(upgraded, release, work)      # PATCH -> v2: refused without a signed authorization, then with
        yield upgraded


SPOOL = "/var/lib/appliance/upgrade-requests"


def _console_apply(upgraded: Upgraded, bundle: Path) -> None:
    """What the console's Apply does (tests/browser/test_upgrade.py shows the page): an upload in the spool,
    owned by the console's user, and apply.json written atomically; appliance-upgrade.path does the rest."""
    host = upgraded.host
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest_sha256 = hashlib.sha256(member.read()).hexdigest()
    before = _counts(host)
    upload = "0123456789abcdef.bundle"
    host.copy_in(bundle, f"{SPOOL}/{upload}")
    request = json.dumps({"bundle": upload, "manifest_sha256": manifest_sha256, "actor": "admin"})
    assert host.sh(f"chown appliance: {SPOOL}/{upload} && cd {SPOOL} && printf '%s' '{request}' > .apply.json.new "
                   "&& chown appliance: .apply.json.new && mv .apply.json.new apply.json").returncode == 0

    def finished() -> dict[str, Any] | None:
        """The console's upgrade's journal, once it has ended and the oneshot service with it."""
        state = host.run("systemctl", "is-active", "appliance-upgrade.service").stdout.strip()
        text = host.sh("cat /var/lib/appliance/installer/journal.json").stdout
        journal: dict[str, Any] = json.loads(text) if text else {}
        ours = journal.get("data", {}).get("actor") == "console:admin"
        return journal if ours and journal.get("outcome") != "running" and state in ("inactive", "failed") else None

    started = time.monotonic()
    while (journal := finished()) is None and time.monotonic() - started < 900:
        time.sleep(3)
    journal = journal or {"outcome": "never started"}
    service = host.sh("journalctl -u appliance-upgrade.service --no-pager -o cat | tail -40").stdout
    case = Case("console-apply", subprocess.CompletedProcess([], 0 if journal["outcome"] == "succeeded" else 1,
                                                             service, ""),
                None, time.monotonic() - started, before, _counts(host), _version(host),
                https(host, "GET", "/healthz") == (200, "OK"), _login_works(host), service)
    print(f"case console-apply: {journal['outcome']} after {case.seconds:.0f}s; now {case.version}")
    upgraded.cases["console-apply"] = case


def _downgrade(upgraded: Upgraded, release: Release, work: Path) -> None:
    host = upgraded.host
    upgraded.downgrade_refused = _run(host, "upgrade v2.bundle --yes")
    authorization = work / "downgrade.json"
    document = authorize(PATCH, NEXT, "the e2e test goes back", valid_for=timedelta(days=1)).document()
    write_signed(authorization, document, (release.key.fingerprint,), release.key.home, None)
    host.copy_in(authorization, "/root/downgrade.json")
    _case(upgraded, "downgrade", "upgrade v2.bundle --yes --downgrade-authorization downgrade.json")


def _benchmarked(upgraded: Upgraded) -> None:
    """The happy path, v1 -> v2, with a poller of /healthz and of the API measuring downtime."""
    host = upgraded.host
    host.run("systemd-run", "--unit=upgrade-poller", "python3", "-c", POLLER, "900")
    time.sleep(2)
    _case(upgraded, "upgrade", "upgrade v2.bundle --yes")
    host.run("systemctl", "stop", "upgrade-poller")
    upgraded.downtime = json.loads(host.read_text("/root/poller.json"))
    upgraded.receipt = json.loads(host.read_text("/var/lib/appliance/installer/receipts/latest.json"))
    steps = ", ".join(f"{s['name']} {s['seconds']:.1f}s" for s in upgraded.receipt["steps"])
    print(f"BENCHMARK upgrade {VERSION} -> {NEXT}: total {upgraded.cases['upgrade'].seconds:.0f}s; downtime seen by "
          f"pollers: healthz {upgraded.downtime.get('healthz', 0):.1f}s, api {upgraded.downtime.get('api', 0):.1f}s; "
          f"installer-measured {upgraded.receipt['downtime_seconds']}s; steps: {steps}")


def _assert_recovered(case: Case, version: str) -> None:
    assert case.healthy and case.login_works, case.log
    assert case.version == version, case.log
    assert case.counts_after == case.counts_before, (case.counts_before, case.counts_after, case.log)


# -- bundles that must change nothing ----------------------------------------------------------------


def test_a_tampered_an_older_and_an_expired_bundle_change_nothing(upgraded: Upgraded) -> None:
    tampered, older, expired = (upgraded.refused[n] for n in ("tampered", "older", "expired"))
    assert tampered[0].returncode == 3 and "hash-mismatch" in tampered[0].stderr, tampered[0].stderr
    assert older[0].returncode == 3 and "older than the installed" in older[0].stderr, older[0].stderr
    assert expired[0].returncode == 3 and "expired" in expired[0].stderr, expired[0].stderr
    assert tampered[1] and older[1] and expired[1]
    assert checkout_version in older[0].stderr


def test_the_plan_names_the_new_migration_the_changed_wheel_and_the_restarts(upgraded: Upgraded) -> None:
    plan = upgraded.plan
    assert plan["from_version"] == VERSION and plan["to_version"] == NEXT
    assert [m for m in plan["migrations"] if m.endswith("_upgrade_probe")], plan["migrations"]
    assert {"kind": "wheel", "name": "appliance", "old": VERSION, "new": NEXT, "what": "changed"} in plan["changes"]
    assert "appliance-console.service" in plan["restarts"]
    assert 0 < plan["disk_needed"] < plan["disk_free"]


# -- faults: each ends on a working appliance with every row ----------------------------------------


def test_a_v2_whose_console_cannot_start_fails_its_health_gate_and_rolls_back(upgraded: Upgraded) -> None:
    case = upgraded.cases["health-gate"]
    assert case.result.returncode == 1, case.log
    assert re.search(r"step (restart|health)", case.result.stderr), case.log
    assert "every change was undone" in case.result.stderr, case.log
    assert "/var/log/appliance/installer.log" in case.result.stderr
    _assert_recovered(case, VERSION)


def test_a_migration_that_fails_is_rolled_back_in_the_same_command(upgraded: Upgraded) -> None:
    case = upgraded.cases["failed-migration"]
    assert case.result.returncode == 1, case.log
    assert "step migrate" in case.result.stderr.lower() and "division by zero" in case.result.stderr, case.log
    assert "every change was undone" in case.result.stderr, case.log
    _assert_recovered(case, VERSION)


def test_a_run_killed_after_the_backup_is_rolled_back_by_status(upgraded: Upgraded) -> None:
    case = upgraded.cases["kill-after-backup"]
    assert case.result.returncode != 0 and case.recovery is not None
    assert case.recovery.returncode == 0, case.recovery.stdout + case.recovery.stderr
    assert "rolling it back" in case.recovery.stderr, case.recovery.stderr
    _assert_recovered(case, VERSION)


def test_a_run_killed_mid_migration_is_rolled_back_by_rollback(upgraded: Upgraded) -> None:
    case = upgraded.cases["kill-mid-migration"]
    assert case.result.returncode != 0 and case.recovery is not None
    assert case.recovery.returncode == 0, case.recovery.stdout + case.recovery.stderr
    _assert_recovered(case, VERSION)


def test_a_run_killed_after_the_switch_is_rolled_back_by_status(upgraded: Upgraded) -> None:
    case = upgraded.cases["kill-after-switch"]
    assert case.result.returncode != 0 and case.recovery is not None
    assert case.recovery.returncode == 0, case.recovery.stdout + case.recovery.stderr
    assert "rolling it back" in case.recovery.stderr
    _assert_recovered(case, VERSION)


def test_rollback_returns_to_the_previous_release_with_the_backup_taken_before_the_upgrade(
        upgraded: Upgraded) -> None:
    case = upgraded.cases["rollback"]
    assert case.result.returncode == 0, case.log
    assert case.version == VERSION and case.healthy and case.login_works, case.log
    # Users and workspaces as before the upgrade; the build started on v2 went with the restore, as warned.
    assert case.counts_after[:2] == case.counts_before[:2]
    assert "anything written since is lost" in case.result.stdout


# -- the upgrade ----------------------------------------------------------------------------------


def test_the_upgrade_keeps_every_row_and_the_workspace_starts_on_v2(upgraded: Upgraded) -> None:
    case = upgraded.cases["upgrade"]
    assert case.result.returncode == 0, case.log
    _assert_recovered(case, NEXT)
    assert upgraded.on_v2 == ("0", "running")   # v2's migration ran; the workspace started on v2


def test_the_health_report_is_all_ok_after_the_upgrade(upgraded: Upgraded) -> None:
    assert upgraded.cases["upgrade"].result.returncode == 0
    assert upgraded.health_on_v2 == []


def test_the_receipts_record_the_upgrade_and_the_rollback_on_disk_and_in_postgresql(upgraded: Upgraded) -> None:
    receipt = upgraded.receipt
    assert (receipt["kind"], receipt["from_version"], receipt["to_version"], receipt["outcome"]) == \
        ("upgrade", VERSION, NEXT, "succeeded")
    assert [s["outcome"] for s in receipt["steps"]] == ["done"] * len(receipt["steps"])
    listed = upgraded.host.run("runuser", "-u", "postgres", "--", "psql", "-d", "appliance", "-tA", "-F", " ", "-c",
                               "SELECT kind, from_version, to_version, outcome FROM release_history")
    assert listed.returncode == 0, listed.stderr
    kinds = [tuple(line.split()) for line in listed.stdout.splitlines()]
    # After the rollback's restore too: the failed upgrade, the one that succeeded (recorded again), the rollback.
    assert {("upgrade", VERSION, NEXT, "rolled-back"), ("upgrade", VERSION, NEXT, "succeeded"),
            ("rollback", NEXT, VERSION, "succeeded")} <= set(kinds), kinds


# -- the console's Apply, and a signed downgrade ------------------------------------------------------


def test_an_upgrade_applied_in_the_console_is_run_by_the_root_path_unit(upgraded: Upgraded) -> None:
    case = upgraded.cases["console-apply"]
    assert case.result.returncode == 0, case.log
    _assert_recovered(case, NEXT)
    listed = upgraded.host.run("runuser", "-u", "postgres", "--", "psql", "-d", "appliance", "-tA", "-F", " ", "-c",
                               "SELECT actor, to_version, outcome FROM release_history")
    assert ("console:admin", NEXT, "succeeded") in [tuple(line.split()) for line in listed.stdout.splitlines()]


def test_a_downgrade_is_refused_without_a_signed_authorization_and_recorded_with_one(upgraded: Upgraded) -> None:
    refused = upgraded.downgrade_refused
    assert refused.returncode == 3 and "authorize-downgrade" in refused.stderr, refused.stderr
    assert upgraded.cases["to-patch"].version == PATCH, upgraded.cases["to-patch"].log
    case = upgraded.cases["downgrade"]
    assert case.result.returncode == 0, case.log
    _assert_recovered(case, NEXT)
    listed = upgraded.host.run("runuser", "-u", "postgres", "--", "psql", "-d", "appliance", "-tA", "-F", " ", "-c",
                               "SELECT kind, from_version, to_version, outcome FROM release_history")
    assert ("downgrade", PATCH, NEXT, "succeeded") in [tuple(line.split()) for line in listed.stdout.splitlines()]
