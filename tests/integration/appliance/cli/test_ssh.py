"""`appliance ssh`, `appliance ssh --stdio` under the real OpenSSH client (ssh, scp, sftp, rsync), and
`appliance config-ssh`, against a live server, its relay and an agent: every byte through the relay."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import psycopg
import pytest

from tests.support.agents import SeededAgent, agent_process, finish_build, seed_agent, seed_template
from tests.support.api import Api
from tests.support.postgres import truncate_all
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer
from tests.support.tap import Tap, tapped

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("ssh") or not shutil.which("rsync"),
                                 reason="needs the OpenSSH client and rsync (dev/system-packages.sh --test)")]

MB = 1 << 20


@dataclass(frozen=True)
class Site:
    """One user's running workspace `box` (a stand-in agent serving `home`), reached by the CLI and OpenSSH."""

    server: LiveServer
    owner: Api
    member: Api
    box: SeededAgent
    home: Path
    config_dir: Path
    ssh_config: Path
    tap: Tap  # the agent's side of the relay: every byte the relay forwards to or from the agent

    def env(self, member: Api | None = None, url: str = "") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        return env | {"APPLIANCE_URL": url or self.server.url, "APPLIANCE_SESSION_TOKEN": (member or self.member).token
                      or "", "APPLIANCE_CONFIG_DIR": str(self.config_dir)}

    def appliance(self, *args: str, member: Api | None = None, stdin: str = "", url: str = "",
                  timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                              input=stdin, env=self.env(member, url), timeout=timeout, check=False)

    def openssh(self, program: str, *args: str, stdin: str = "", timeout: float = 120
                ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([program, "-F", str(self.ssh_config), *args], capture_output=True, text=True,
                              input=stdin, env=self.env(), timeout=timeout, check=False)


@pytest.fixture(scope="module")
def site(server: LiveServer, shared_conninfo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    truncate_all(shared_conninfo)  # once for the module: its tests share one user, workspace and agent
    anonymous = Api(server.url)
    anonymous.create_first_user("owner")
    owner = anonymous.as_user(anonymous.login("owner"))
    seed_template(shared_conninfo)
    owner.create_user(username="dev")
    member = owner.as_user(owner.login("dev"))
    box = seed_agent(member, shared_conninfo, name="box")
    root = tmp_path_factory.mktemp("ssh")
    home, config_dir = root / "home", root / "config"
    home.mkdir()
    (home / "README-in-home.txt").write_text("hello from the workspace\n")
    port = int(server.url.rsplit(":", 1)[1])
    with tapped("127.0.0.1", port) as tap, agent_in_thread(StandInAgent(tap.url, box.token, str(home))):
        site = Site(server, owner, member, box, home, config_dir, root / "ssh_config", tap)
        written = site.appliance("config-ssh", "--ssh-config-file", str(site.ssh_config))
        assert written.returncode == 0, written.stderr
        yield site


@pytest.fixture
def site_tap(site: Site) -> Site:
    """The site with the tap's record emptied, so a test sees only its own bytes."""
    site.tap.to_server.clear()
    site.tap.to_clients.clear()
    return site


def test_openssh_through_the_proxy_command_runs_a_command_and_returns_its_exit_code(site_tap: Site) -> None:
    site = site_tap
    result = site.openssh("ssh", "appliance.box", "echo hello-$((6*7)); exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "hello-42\n"
    assert len(site.tap.to_server) + len(site.tap.to_clients) > 1000  # the session went through the relay


def test_the_relay_never_sees_what_openssh_or_appliance_ssh_carry(site_tap: Site) -> None:
    site = site_tap
    marker = "MARKER-" + os.urandom(8).hex()
    through_openssh = site.openssh("ssh", "appliance.box", "cat", stdin=marker + "\n")
    assert through_openssh.stdout == marker + "\n", through_openssh.stderr
    through_cli = site.appliance("ssh", "box", "--", "echo", marker, url=site.tap.url)
    assert through_cli.stdout == marker + "\n", through_cli.stderr
    seen = bytes(site.tap.to_server) + bytes(site.tap.to_clients)
    assert len(seen) > 2000
    assert marker.encode() not in seen and marker.split("-")[1].encode() not in seen


def _public_line() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


def _random_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(MB):
            digest.update(block)
    return digest.hexdigest()


def test_scp_copies_50_mb_both_ways_unchanged(site: Site, tmp_path: Path) -> None:
    local = tmp_path / "big.bin"
    expected = _random_file(local, 50 * MB)
    up = site.openssh("scp", "-q", str(local), "appliance.box:big-upload.bin", timeout=300)
    assert up.returncode == 0, up.stderr
    assert _sha256(site.home / "big-upload.bin") == expected
    back = tmp_path / "back.bin"
    down = site.openssh("scp", "-q", "appliance.box:big-upload.bin", str(back), timeout=300)
    assert down.returncode == 0, down.stderr
    assert _sha256(back) == expected
    (site.home / "big-upload.bin").unlink()


def test_sftp_lists_the_home_folder(site: Site) -> None:
    result = site.openssh("sftp", "-b", "-", "appliance.box", stdin="ls\n")
    assert result.returncode == 0, result.stderr
    assert "README-in-home.txt" in result.stdout


def test_rsync_copies_a_tree_over_openssh(site: Site, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.txt").write_text("beta\n")
    result = subprocess.run(["rsync", "-a", "-e", f"ssh -F {site.ssh_config}", f"{tree}/", "appliance.box:synced/"],
                            capture_output=True, text=True, env=site.env(), timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert (site.home / "synced" / "sub" / "b.txt").read_text() == "beta\n"
    assert (site.home / "synced" / "a.txt").read_text() == "alpha\n"


def test_appliance_ssh_runs_a_command_with_stdin_and_returns_its_exit_code(site: Site) -> None:
    piped = site.appliance("ssh", "box", "--", "tr", "a-z", "A-Z", stdin="shout\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "SHOUT\n"
    failing = site.appliance("ssh", "box", "--", "echo oops >&2; exit 3")
    assert failing.returncode == 3
    assert failing.stderr == "oops\n"


def test_config_ssh_is_idempotent_keeps_other_content_and_dry_run_writes_nothing(site: Site, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host elsewhere\n  User me\n")
    dry = site.appliance("config-ssh", "--ssh-config-file", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+Host appliance.box" in dry.stdout and dry.stdout.startswith("---")
    assert config.read_text() == "Host elsewhere\n  User me\n"
    assert site.appliance("config-ssh", "--ssh-config-file", str(config)).returncode == 0
    first = config.read_text()
    again = site.appliance("config-ssh", "--ssh-config-file", str(config))
    assert again.returncode == 0 and "No change" in again.stdout
    assert config.read_text() == first
    assert first.startswith("Host elsewhere\n  User me\n")
    assert first.count("# ------------START-APPLIANCE-----------") == 1
    assert "StrictHostKeyChecking yes" in first and "UserKnownHostsFile /dev/null" not in first
    result = subprocess.run(["ssh", "-F", str(config), "appliance.box", "true"], capture_output=True, text=True,
                            env=site.env(), timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_config_ssh_drops_a_deleted_workspace_and_adds_a_new_one(site: Site, shared_conninfo: str,
                                                                  tmp_path: Path) -> None:
    config = tmp_path / "config"
    spare = seed_agent(site.member, shared_conninfo, name="spare")
    assert site.appliance("config-ssh", "--ssh-config-file", str(config)).returncode == 0
    assert "Host appliance.spare" in config.read_text()
    deleted = site.member.post(f"/api/v2/workspaces/{spare.workspace_id}/builds", json={"transition": "delete"})
    assert deleted.status_code == 201, deleted.text
    finish_build(shared_conninfo, deleted.json()["id"], b'{"resources": []}')
    with psycopg.connect(shared_conninfo) as conn:  # as the coordinator does when a delete build succeeds
        conn.execute("UPDATE workspaces SET deleted_at = now() WHERE id = %s", (spare.workspace_id,))
    assert site.appliance("config-ssh", "--ssh-config-file", str(config)).returncode == 0
    text = config.read_text()
    assert "Host appliance.spare" not in text and "Host appliance.box" in text


def test_a_user_without_access_gets_not_found(site: Site) -> None:
    site.owner.create_user(username="stranger")
    stranger = site.owner.as_user(site.owner.login("stranger"))
    result = site.appliance("ssh", site.box.workspace_id, "--", "true", member=stranger)
    assert result.returncode != 0
    assert "does not exist. (HTTP 404)" in result.stderr
    assert "Traceback" not in result.stderr
    paired = stranger.post(f"/api/v2/workspaceagents/{site.box.agent_id}/pair",
                           json={"node_key": "ab" * 32, "ssh_public_key": _public_line()})
    assert paired.status_code == 404


def test_wait_no_fails_fast_for_an_agent_that_has_not_connected(site: Site, shared_conninfo: str) -> None:
    seed_agent(site.member, shared_conninfo, name="idle")
    result = site.appliance("ssh", "--wait", "no", "idle", "--", "true", timeout=30)
    assert result.returncode != 0
    assert "The agent of workspace idle has not connected yet (connecting)" in result.stderr
    assert "--wait no" in result.stderr and "Traceback" not in result.stderr


def test_ssh_waits_for_an_agent_that_connects_later(site: Site, shared_conninfo: str) -> None:
    late = seed_agent(site.member, shared_conninfo, name="late")
    with subprocess.Popen([sys.executable, "-m", "appliance", "ssh", "late", "--", "echo", "arrived"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=site.env()) as waiting:
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(2)  # still waiting: no agent yet
        with agent_in_thread(StandInAgent(site.server.url, late.token, str(site.home))):
            out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert out == "arrived\n"


def _read_until(master: int, pattern: str, seen: bytearray, timeout: float = 30) -> str:
    """Read the terminal until `pattern` shows (after what was seen before); what was read."""
    deadline = time.monotonic() + timeout
    start = len(seen)
    while re.search(pattern, seen[start:].decode(errors="replace")) is None:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"never saw {pattern!r} in {bytes(seen[start:])!r}"
        seen += os.read(master, 4096)
    return seen[start:].decode(errors="replace")


def _set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def test_an_interactive_shell_has_a_pty_with_term_and_follows_the_window_size(site: Site, shared_conninfo: str,
                                                                           tmp_path: Path) -> None:
    # The real agent as its own process: the stand-in would fork the shell from this threaded test process.
    tty = seed_agent(site.member, shared_conninfo, name="tty")
    master, slave = os.openpty()
    _set_size(slave, 30, 100)
    # setsid --ctty: the terminal becomes the CLI's controlling terminal, so a resize sends it SIGWINCH
    # (a preexec_fn could deadlock the fork of this threaded test process).
    with agent_process(site.server.url, tty.token, tmp_path / "agent"), \
            subprocess.Popen(["setsid", "--ctty", sys.executable, "-m", "appliance", "ssh", "tty"], stdin=slave,
                             stdout=slave, stderr=slave, env=site.env() | {"TERM": "vt220"}) as shell:
        os.close(slave)
        try:
            seen = bytearray()
            _read_until(master, r"[#$] ", seen)  # the prompt: a shell may drop what was typed before it
            os.write(master, b"echo T=$TERM; stty size\n")
            assert "30 100" in _read_until(master, r"T=vt220\s+30 100", seen)
            _set_size(master, 40, 120)  # the terminal resized: our process gets SIGWINCH, the shell the new size
            time.sleep(0.5)
            os.write(master, b"stty size; exit 5\n")
            _read_until(master, r"40 120", seen)
            assert shell.wait(30) == 5
        finally:
            shell.kill()
            os.close(master)
