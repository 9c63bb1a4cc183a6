"""What the e2e modules share: the release under test (built once per run), the installer's commands on
an offline host, and requests made from inside it.

test_install.py and test_upgrade.py both install this release; `release` (tests/e2e/conftest.py) builds
it once per session with build_release.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import semver

from appliance import __version__ as checkout_version
from tests.support.bundles import ReleaseKey, make_key, staged_source
from tests.support.images import RELEASE_EPOCH
from tests.support.nspawn import OfflineHost

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "bundle"
# A release the checkout does not carry: the bundle is built from a copy bumped to it, so a
# version that leaked from anywhere but the release's own package would show up below.
VERSION = str(semver.Version.parse(checkout_version).bump_minor())
BUNDLE = f"appliance-{VERSION}.bundle"
PASSWORD = "correct-horse-battery"
# The documented first-install bootstrap (README "Install on an offline host"): check the
# installer against the signed manifest with tools every Debian 12 has, before running it.
BOOTSTRAP = f"""cd /root
tar -xf {BUNDLE} manifest.json manifest.json.sig installer/appliance-installer
gpgv --keyring /root/release.gpg manifest.json.sig manifest.json
python3 - <<'PY'
import hashlib, json
listed = {{m["path"]: m["sha256"] for m in json.load(open("manifest.json"))["members"]}}
actual = hashlib.sha256(open("installer/appliance-installer", "rb").read()).hexdigest()
assert actual == listed["installer/appliance-installer"], "installer does not match the signed manifest"
print("installer verified")
PY
"""
INSTALL = f"cd /root && ./installer/appliance-installer install {BUNDLE} --keyring release.gpg"


@dataclass(frozen=True)
class Release:
    bundle: Path
    key: ReleaseKey
    public_binary: Path



@contextmanager
def alongside(argv: list[str], **popen: Any) -> Iterator[list[str]]:
    """Run argv while the block runs, on a core the block leaves idle; after it, the list holds argv's output.

    If the block fails, argv is killed: nothing outlives the fixture that started it.
    """
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    output: list[str] = []
    try:
        yield output
    except BaseException:
        process.kill()
        process.wait()
        raise
    output.append(process.communicate(timeout=1800)[0] + f"(exit {process.returncode})")




# What the bundle build's agent and image steps do (bundles/build/appliance_agent.py, collect.py), run
# from the same source with the same cache: argv is the agent's output folder and the cache folder.
WARM = """
import subprocess, sys
from pathlib import Path
from bundles.build.base_image import cached_base_image
cache = Path(sys.argv[2]).resolve()
agent = ["agent", "package", sys.argv[1], "--cache-dir", str(cache / "agent")]
subprocess.run([sys.executable, "-m", "appliance", *agent], check=True)
cached_base_image(cache)
"""


def build_release(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Release:
    """The product bundle at VERSION, built from a bumped copy of the checkout and signed with a key made now."""
    work = tmp_path_factory.mktemp("release")
    started = time.monotonic()
    source = staged_source(REPO, work / "source", VERSION)
    # Run from the copy, as a release engineer runs from a checkout: its bundles tool, its appliance.
    env = {**os.environ, "SOURCE_DATE_EPOCH": RELEASE_EPOCH, "PYTHONPATH": str(source)}
    # Two of the build's steps need nothing the others make: the agent (PyInstaller, a minute) and
    # the base image (debootstrap, two). On a cold cache a process of its own makes them beside the
    # build's first steps, so two cores work at once; the build's own steps then find them in the
    # cache (its image step waits on the cache's lock while the image is still being made).
    with alongside([sys.executable, "-c", WARM, str(work / "warm-agent"), str(CACHE)], cwd=source, env=env) as warm:
        # A real provider (the tf-framework test provider, packaged like a release) for both the
        # network mirror and the appliance's own registry; the product recipe ships none of its own yet.
        # Asked for here, not as an argument, so that its first build overlaps the warming too.
        hello: Path = request.getfixturevalue("hello_provider_zip")
        for folder in (work / "providers" / "registry.terraform.io/test/hello", work / "registry/test/hello"):
            folder.mkdir(parents=True)
            shutil.copy(hello, folder)
        recipe = source / "bundles/appliance.toml"
        result = subprocess.run([sys.executable, "-m", "bundles", "build", "--recipe", str(recipe), "--version",
                                 VERSION, "--output", str(work), "--cache-dir", str(CACHE), "--providers-from",
                                 str(work / "providers"), "--registry-from", str(work / "registry")],
                                capture_output=True, text=True, timeout=1800, cwd=source, check=False, env=env)
    assert result.returncode == 0, f"{result.stderr[-3000:]}\n--- warming ---\n{warm[0][-2000:]}"
    key = make_key(work, "release")
    signed = subprocess.run([sys.executable, "-m", "bundles", "sign", str(work / BUNDLE), "--key", key.fingerprint,
                             "--gnupghome", str(key.home)], capture_output=True, text=True, check=False)
    assert signed.returncode == 0, signed.stderr
    binary = work / "release.gpg"
    exported = subprocess.run([sys.executable, "-m", "bundles", "keys", "export", key.fingerprint, "--gnupghome",
                               str(key.home), "--output", str(binary)], capture_output=True, text=True, check=False)
    assert exported.returncode == 0, exported.stderr
    size = (work / BUNDLE).stat().st_size
    print(f"bundle built and signed in {time.monotonic() - started:.0f}s: {size / 1e6:.1f} MB")
    return Release(work / BUNDLE, key, binary)


def prepare(host: OfflineHost, release: Release) -> None:
    host.copy_in(release.bundle, f"/root/{BUNDLE}")
    host.copy_in(release.public_binary, "/root/release.gpg")
    bootstrap = host.sh(BOOTSTRAP)
    assert bootstrap.returncode == 0, bootstrap.stdout + bootstrap.stderr
    assert "installer verified" in bootstrap.stdout and "Good signature" in bootstrap.stderr


def install(host: OfflineHost, extra: str = "") -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = host.sh(f"{INSTALL} {extra}", timeout=1800)
    return result, time.monotonic() - started


def explain(host: OfflineHost, result: subprocess.CompletedProcess[str]) -> str:
    log = host.sh("tail -60 /var/log/appliance/installer.log").stdout
    # A unit that starts and then fails (a worker that cannot boot) shows up only in the journal.
    journal = host.sh("journalctl -p err -n 40 --no-pager -o cat").stdout
    return (f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}\n--- installer.log ---\n{log}\n"
            f"--- journal (errors) ---\n{journal[-4000:]}")


def health_problems(host: OfflineHost) -> list[str]:
    """`appliance health --local --output json` as root on the host (as the installer runs the CLI): what is not ok."""
    result = host.run("/opt/appliance/current/venv/bin/appliance", "health", "--local", "--output", "json",
                      env={"APPLIANCE_CONFIG": "/etc/appliance/appliance.toml"}, timeout=120)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return [f"exit {result.returncode}, no JSON: {result.stdout[-1000:]} {result.stderr[-2000:]}"]
    problems = [f"{name} {found['severity']}: " + "; ".join(f"{f['code']} {f['message']}" for f in found["findings"])
                for name, found in report.items() if isinstance(found, dict) and found.get("severity") != "ok"]
    return problems or ([] if result.returncode == 0 else [f"exit {result.returncode}: {result.stderr[-2000:]}"])


REQUEST = """
import json, ssl, sys, urllib.request
method, url, body, token, cafile, content_type = sys.argv[1:7]
context = ssl.create_default_context(cafile=cafile or None)
headers = {"Content-Type": content_type}
if token:
    headers["Authorization"] = "Bearer " + token
data = open(body[1:], "rb").read() if body.startswith("@") else body.encode() if body else None
request = urllib.request.Request(url, method=method, data=data, headers=headers)
try:
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        print(json.dumps({"status": response.status, "body": response.read().decode()}))
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code, "body": err.read().decode()}))
except Exception as err:
    print(json.dumps({"status": 0, "body": repr(err)}))
"""


def https(host: OfflineHost, method: str, path: str, body: dict[str, Any] | None = None, token: str = "",
          cafile: str = "/var/lib/appliance/pki/ca-bundle.pem", *, upload: str = "",
          content_type: str = "application/json") -> tuple[int, str]:
    """A request made from inside the host with the host's python3, trusting only `cafile`.

    The body is `body` as JSON, or the bytes of the file `upload` inside the host.
    """
    data = f"@{upload}" if upload else json.dumps(body) if body else ""
    result = host.run("python3", "-c", REQUEST, method, f"https://appliance-host{path}", data, token, cafile,
                      content_type)
    answer = json.loads(result.stdout)
    return int(answer["status"]), str(answer["body"])


def login(host: OfflineHost) -> str:
    status, body = https(host, "POST", "/api/v2/users/login", {"username": "admin", "password": PASSWORD})
    assert status == 201, body
    return str(json.loads(body)["session_token"])


def wait_job(host: OfflineHost, path: str, token: str, timeout: float = 300) -> dict[str, Any]:
    """GET path until its job has finished (succeeded, failed or canceled)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = https(host, "GET", path, token=token)
        assert status == 200, body
        found: dict[str, Any] = json.loads(body)
        if found["job"]["status"] in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
            return found
        time.sleep(1)


def job_failure(host: OfflineHost, found: dict[str, Any], token: str) -> str:
    """The job, its logs and the daemon's journal, for a failure message."""
    kind = "workspacebuilds" if "transition" in found else "templateversions"
    logs = https(host, "GET", f"/api/v2/{kind}/{found['id']}/logs", token=token)[1]
    return f"{json.dumps(found['job'])}\n{logs[-3000:]}\n{host.journal('appliance-provisioner.service')}"


def push_template(host: OfflineHost, token: str, name: str, folder: Path, work: Path) -> dict[str, Any]:
    """Upload `folder` as template `name`'s first version and wait for its import: the version as the API shows it."""
    from appliance.templates.archive import source_archive

    archive = work / f"{name}.tar"
    archive.write_bytes(source_archive(folder))
    host.copy_in(archive, f"/root/{name}.tar")
    status, body = https(host, "POST", "/api/v2/files", token=token, upload=f"/root/{name}.tar",
                         content_type="application/x-tar")
    assert status == 201, body
    assert https(host, "POST", "/api/v2/templates", {"name": name}, token)[0] == 201
    status, body = https(host, "POST", f"/api/v2/templates/{name}/versions", {"file_hash": json.loads(body)["hash"]},
                         token)
    assert status == 201, body
    version = wait_job(host, f"/api/v2/templates/{name}/versions/{json.loads(body)['id']}", token)
    assert version["job"]["status"] == "succeeded", job_failure(host, version, token)
    return version
