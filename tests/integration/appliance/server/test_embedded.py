"""`appliance server` as a user runs it: embedded PostgreSQL up, /healthz OK, nothing left behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from appliance.sdk.runtime import LABEL_WORKSPACE
from tests.support.api import Api
from tests.support.appliance_provider import CACHE as PROVIDER_CACHE
from tests.support.appliance_provider import provider_cache_env
from tests.support.images import seed_server_cache
from tests.support.postgres import free_port, postgres_processes_for, traversable_temp_dir
from tests.support.server import wait_for_health
from tests.support.terminal import terminal_url, web_terminal
from tests.support.workspaces import wait_build, wait_version

APPLIANCE = [sys.executable, "-m", "appliance"]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = traversable_temp_dir("appliance-server-")
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


def _start(data_dir: Path, port: int, **extra_env: str) -> subprocess.Popen[str]:
    """`appliance server` on a fresh data dir; only the provider's PyInstaller cache is shared between tests."""
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir), "XDG_CONFIG_HOME": str(data_dir.parent),
           # The registry's default port may be another test's (or another server's) on this machine.
           "APPLIANCE_REGISTRY_ADDRESS": f"127.0.0.1:{free_port()}", **provider_cache_env(), **extra_env}
    env.pop("APPLIANCE_MIRROR_DIR", None)
    env.pop("APPLIANCE_MIRROR_SIGNING_HOME", None)
    env.pop("APPLIANCE_POSTGRES_URL", None)
    return subprocess.Popen([*APPLIANCE, "server", "--http-address", f"127.0.0.1:{port}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    wait_for_health(url, alive=lambda: process.poll() is None)


def _wait_gone(data_dir: Path, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while postgres_processes_for(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    return postgres_processes_for(data_dir)


def _processes_mentioning(data_dir: Path) -> list[str]:
    """Command lines of live processes that name the data dir: nothing of the server's may outlive it."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if str(data_dir) in argv and "pytest" not in argv:
            found.append(argv)
    return found


def process_env(process: subprocess.Popen[str]) -> dict[str, str]:
    entries = Path(f"/proc/{process.pid}/environ").read_text().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def _wait_no_registry(data_dir: Path, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [argv for argv in _processes_mentioning(data_dir) if "docker-registry" in argv]:
            return True
        time.sleep(0.2)
    return False


def test_server_starts_embedded_postgres_and_sigterm_stops_it(data_dir: Path) -> None:
    port = free_port()
    process = _start(data_dir, port)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process)
        assert postgres_processes_for(data_dir), "embedded postgres is not running"
        registry = f"https://{process_env(process)['APPLIANCE_REGISTRY_ADDRESS']}"
        # The registry's own TLS port, trusting the CA the server just made, with the token challenge.
        answer = requests.get(registry + "/v2/", timeout=10, verify=str(data_dir / "pki" / "root" / "ca.crt.pem"))
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith(f'Bearer realm="http://127.0.0.1:{port}/api/v2/registry/')
        first = requests.post(f"http://127.0.0.1:{port}/api/v2/users/first", timeout=10, json={
            "username": "admin", "email": "admin@example.org", "password": "correct-horse-battery"})
        assert first.status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/setup" in output  # the banner says how to create the first user
    assert f"Registry:        {registry}" in output
    assert f"Workspaces:      podman, through {data_dir / 'runtime' / 'runtime.sock'}" in output
    assert not (data_dir / "runtime" / "runtime.sock").exists()  # the embedded runtime service stopped with it
    assert _wait_gone(data_dir) == []
    assert not _processes_mentioning(data_dir), "the registry outlived the server"
    assert (data_dir / "postgres" / "password").stat().st_mode & 0o077 == 0


def test_data_survives_a_restart_and_sigkill_leaves_no_postgres(data_dir: Path) -> None:
    port = free_port()
    process = _start(data_dir, port)
    _wait_healthy(f"http://127.0.0.1:{port}", process)
    requests.post(f"http://127.0.0.1:{port}/api/v2/users/first", timeout=10, json={
        "username": "admin", "email": "admin@example.org", "password": "correct-horse-battery"})
    process.kill()
    process.communicate(timeout=30)
    assert _wait_gone(data_dir) == [], "postgres outlived a SIGKILLed server"
    assert _wait_no_registry(data_dir), "the registry outlived a SIGKILLed server"
    process = _start(data_dir, port)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process)
        login = requests.post(f"http://127.0.0.1:{port}/api/v2/users/login", timeout=10,
                              json={"username": "admin", "password": "correct-horse-battery"})
        assert login.status_code == 201
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert "appliance login" in output
    assert _wait_gone(data_dir) == []


def test_a_busy_port_fails_fast_with_a_hint(data_dir: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = _start(data_dir, port)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in output
    assert "--http-address" in output
    assert "Traceback" not in output
    assert postgres_processes_for(data_dir) == []


def test_a_second_server_on_the_same_data_dir_is_refused(data_dir: Path) -> None:
    first = _start(data_dir, free_port())
    try:
        _wait_healthy(f"http://127.0.0.1:{first.args[-1].rsplit(':', 1)[1]}", first)
        second = _start(data_dir, free_port())
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 1
        assert "Another appliance server is using this data dir" in output
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert _wait_gone(data_dir) == []


def test_a_bad_flag_value_names_the_key(data_dir: Path) -> None:
    result = subprocess.run([*APPLIANCE, "server", "--http-address", "nowhere", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "Invalid http_address from flag --http-address" in result.stderr
    assert "Traceback" not in result.stderr


def _provider_zips(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "mirror" / "mirror" / "appliance.internal" / "appliance" / "appliance").glob("*.zip"))


def _wait_base_image(api: Api, timeout: float = 300) -> None:
    """Until the server has imported base/debian:12 into its registry (in the background, after the banner)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = api.get("/api/v2/images").json()
        if any(repo["name"] == "base/debian" for repo in listing["repositories"]):
            return
        time.sleep(1)
    pytest.fail(f"the base image never reached the registry: {listing}")


def _running_containers(workspace_id: str) -> list[str]:
    listed = subprocess.run(["podman", "ps", "--filter", f"label={LABEL_WORKSPACE}={workspace_id}",
                             "--filter", "status=running", "--format", "{{.Names}}"],
                            capture_output=True, text=True, check=True)
    return listed.stdout.split()


def test_first_start_pushes_the_starter_templates_and_a_workspace_from_minimal_builds(
        data_dir: Path) -> None:
    """What `make run` gives a newcomer, from `appliance server` alone: no publish step, an empty mirror."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert not (data_dir / "mirror").exists()
    seed_server_cache(PROVIDER_CACHE)  # the layout the server finds in its cache, so it only imports it
    process = _start(data_dir, port, APPLIANCE_BASE_IMAGE_AUTO="true")
    try:
        _wait_healthy(url, process)
        assert len(_provider_zips(data_dir)) == 1, "the server did not publish the provider into its mirror"
        api = Api(url)
        api.create_first_user("admin")
        api = api.as_user(api.login("admin"))
        for name in ("minimal", "podman-debian"):
            # Until its first import succeeds a pushed template has no active version.
            version = wait_version(api, name, api.get(f"/api/v2/templates/{name}/versions").json()["versions"][0]["id"])
            assert version["job"]["status"] == "succeeded", version["job"]["error"]
        created = api.post("/api/v2/workspaces", json={"template": "minimal", "name": "first", "parameters": {}})
        assert created.status_code == 201, created.text
        assert wait_build(api, created.json()["latest_build"]["id"])["status"] == "running"
        _wait_base_image(api)
        created = api.post("/api/v2/workspaces", json={"template": "podman-debian", "name": "box", "parameters": {}})
        assert created.status_code == 201, created.text
        build = wait_build(api, created.json()["latest_build"]["id"], timeout=300)
        assert build["status"] == "running", build
        assert _running_containers(created.json()["id"]), "the podman-debian workspace has no running container"
        deleted = api.post(f"/api/v2/workspaces/{created.json()['id']}/builds", json={"transition": "delete"})
        assert wait_build(api, deleted.json()["id"], timeout=300)["status"] == "deleted"
        assert not _running_containers(created.json()["id"])
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert f"Published appliance.internal/appliance/appliance into {data_dir / 'mirror'}" in output
    assert not _processes_mentioning(data_dir), "a process (gpg-agent?) outlived the server"
    published = _provider_zips(data_dir)[0].stat().st_mtime_ns
    restarted = _start(data_dir, port)
    try:
        _wait_healthy(url, restarted)
        api = Api(url)
        api = api.as_user(api.login("admin"))
        names = sorted(t["name"] for t in api.get("/api/v2/templates").json()["templates"])
        assert names == ["minimal", "podman-debian"], "pushed once, not at every start"
    finally:
        restarted.send_signal(signal.SIGTERM)
        output, _ = restarted.communicate(timeout=60)
    assert "Published" not in output and "Packaging" not in output, output
    assert _provider_zips(data_dir)[0].stat().st_mtime_ns == published, "an up-to-date mirror was rewritten"


def test_without_the_tools_to_package_the_provider_the_console_still_serves_and_says_how_to_fix_it(
        data_dir: Path, tmp_path: Path) -> None:
    """binutils missing (PyInstaller needs objdump) and nothing cached: a clear hint, no doomed starter import."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # /usr/local/bin holds terraform but not objdump; a cold cache forces a build.
    process = _start(data_dir, port, PATH="/usr/local/bin", APPLIANCE_PROVIDER_CACHE_DIR=str(tmp_path / "cold"))
    try:
        _wait_healthy(url, process)
        api = Api(url)
        api.create_first_user("admin")
        api = api.as_user(api.login("admin"))
        assert api.get("/api/v2/templates").json()["templates"] == []  # its import could only fail
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Cannot package the appliance Terraform provider: objdump is not on PATH" in output
    assert "apt-get install binutils" in output
    assert "The container registry (docker-registry) is not installed" in output  # not on that PATH either
    assert "apt-get install docker-registry" in output
    assert "Traceback" not in output, output
    assert "Workspaces cannot run containers: podman is not installed" in output  # not on that PATH
    assert "apt-get install podman runc" in output
    assert _provider_zips(data_dir) == []


def test_a_fresh_server_serves_its_agent_and_a_podman_debian_workspace_connects_and_is_ready(
        data_dir: Path) -> None:
    """Issue 14's acceptance: from `appliance server` alone, the podman-debian workspace's agent (the executable
    the server built and serves) dials the relay from its container and reports its startup log."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seed_server_cache(PROVIDER_CACHE)
    process = _start(data_dir, port, APPLIANCE_BASE_IMAGE_AUTO="true")
    try:
        _wait_healthy(url, process)
        api = Api(url)
        api.create_first_user("admin")
        api = api.as_user(api.login("admin"))
        version = api.get("/api/v2/templates/podman-debian/versions").json()["versions"][0]["id"]
        assert wait_version(api, "podman-debian", version)["job"]["status"] == "succeeded"
        _wait_base_image(api)
        created = api.post("/api/v2/workspaces", json={"template": "podman-debian", "name": "box", "parameters": {}})
        assert created.status_code == 201, created.text
        build = wait_build(api, created.json()["latest_build"]["id"], timeout=300)
        assert build["status"] == "running", build
        # The agent shows under the resource that runs it (the container), as Coder attaches it.
        agent_id = next(agent["id"] for r in build["resources"] for agent in r.get("agents") or [])
        agent = _wait_agent_ready(api, agent_id, created.json()["id"])
        assert agent["status"] == "connected" and agent["version"]
        lines = [line["output"] for line in api.get(f"/api/v2/workspaceagents/{agent_id}/logs").json()["logs"]]
        assert lines[0] == "Workspace box is starting as dev in /home/dev.", lines
        assert lines[-1].startswith("Ready: Debian GNU/Linux 12"), lines
        # The developer's side: `appliance ping` reaches that agent, in its container, through the relay.
        pinged = _appliance_cli(url, api, "ping", "box", "-n", "2", "--interval", "0.1")
        assert pinged.returncode == 0, pinged.stderr
        assert pinged.stdout.count("via DERP relay, never direct (region 999 Appliance Embedded Relay)") == 2
        _developer_gets_in(url, api, agent_id, data_dir.parent)
        # A ping running while the workspace stops ends with the reason, not a hang or a traceback.
        running = _appliance_cli_background(url, api, "ping", "box", "-n", "600", "--interval", "0.2")
        time.sleep(2)
        stopped = api.post(f"/api/v2/workspaces/{created.json()['id']}/builds", json={"transition": "stop"})
        assert stopped.status_code == 201, stopped.text
        _, errors = running.communicate(timeout=30)
        assert running.returncode != 0 and "Traceback" not in errors, errors
        assert wait_build(api, stopped.json()["id"], timeout=300)["status"] == "stopped"
        deleted = api.post(f"/api/v2/workspaces/{created.json()['id']}/builds", json={"transition": "delete"})
        assert wait_build(api, deleted.json()["id"], timeout=300)["status"] == "deleted"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert f"Workspace agent: {url}/bin/appliance-agent-linux-amd64" in output or \
        f"then {url}/bin/appliance-agent-linux-amd64" in output, output


def _developer_gets_in(url: str, api: Api, agent_id: str, work: Path) -> None:
    """Issue 15's acceptance on the podman-debian workspace: a command over `appliance ssh`, OpenSSH's ssh
    through `appliance config-ssh`'s block, and the console's web terminal."""
    env = _cli_env(url, api) | {"APPLIANCE_CONFIG_DIR": str(work / "cli-config")}
    command = "echo ssh-$((6*7)) on $(. /etc/os-release; echo $ID); exit 3"
    ssh = subprocess.run([*APPLIANCE, "ssh", "box", "--", command], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert ssh.returncode == 3 and "ssh-42 on debian" in ssh.stdout, ssh.stderr
    config = work / "ssh_config"
    written = subprocess.run([*APPLIANCE, "config-ssh", "--ssh-config-file", str(config)], capture_output=True,
                             text=True, env=env, timeout=120, check=False)
    assert written.returncode == 0 and "Host appliance.box" in config.read_text(), written.stderr
    openssh = subprocess.run(["ssh", "-F", str(config), "appliance.box", "echo openssh-$((6*7)) as $(whoami)"],
                             capture_output=True, text=True, env=env, timeout=120, check=False)
    assert openssh.returncode == 0 and "openssh-42 as dev" in openssh.stdout, openssh.stderr

    async def terminal() -> None:
        async with web_terminal(terminal_url(url, agent_id), token=api.token or "", origin=None,
                                cookie=False) as screen:
            await screen.type("echo term-$((6*7)) $TERM\r")
            await screen.until("term-42 xterm-256color", within=60)

    asyncio.run(terminal())


def _cli_env(url: str, api: Api) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    return env | {"APPLIANCE_URL": url, "APPLIANCE_SESSION_TOKEN": api.token or ""}


def _appliance_cli(url: str, api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          env=_cli_env(url, api), timeout=120, check=False)


def _appliance_cli_background(url: str, api: Api, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "appliance", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_cli_env(url, api))


def _wait_agent_ready(api: Api, agent_id: str, workspace_id: str, timeout: float = 300) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent: dict[str, object] = api.get(f"/api/v2/workspaceagents/{agent_id}").json()
        if agent["lifecycle_state"] == "ready" and agent["status"] == "connected":
            return agent
        time.sleep(1)
    container = _running_containers(workspace_id)
    logs = subprocess.run(["podman", "logs", *container[:1]], capture_output=True, text=True).stdout[-3000:] \
        if container else "no container"
    pytest.fail(f"the agent never got ready and connected: {agent}\n{logs}")
