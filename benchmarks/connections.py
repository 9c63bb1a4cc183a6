"""What a developer's connections cost through the relay, against the same thing without it, in one run.

Rows (figures and ratios; nothing here asserts on timings):
- scp: OpenSSH's scp copies a file up and down through `appliance ssh --stdio` (ProxyCommand) ->
  the relay -> the workspace agent (its own process) -> the agent's SSH server; and "direct": the
  same scp straight to the same SSH server code (serve_session) listening on 127.0.0.1 in a process
  of its own, logging in with a certificate as `appliance ssh` does. Both write into a temporary
  folder; the ratio is relayed/direct throughput.
- keystroke echo: the web terminal's latency p50/p99 through the gateway, the relay and SSH, beside
  a local PTY (terminal_latency.py's rows, measured on a site of its own after the scp rows).

How: a throwaway PostgreSQL cluster, the control plane and its embedded relay in this process (as the
integration tests run it), a seeded running workspace, the real agent as a process
(`python -m appliance.agent`), and `appliance config-ssh` writing the SSH config OpenSSH uses.

    PYTHONPATH=. .venv/bin/python benchmarks/connections.py --megabytes 50 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.terminal_latency import KEYS, control_plane, keystroke_rows  # noqa: E402
from tests.support.agents import agent_process, seed_agent, wait_agent  # noqa: E402

MB = 1 << 20

# The agent's SSH server on a loopback TCP port, one serve_session per connection: "direct" scp's far end.
DIRECT_SERVER = """
import asyncio, socket, sys
import asyncssh
from appliance.agent.sshd import serve_session
host_key, user_ca, directory = asyncssh.read_private_key(sys.argv[1]), open(sys.argv[2]).read(), sys.argv[3]
async def main():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    while True:
        sock, _ = await loop.sock_accept(listener)
        asyncio.create_task(serve_session(sock, host_key=host_key, user_ca=user_ca, agent_id="direct",
                                          directory=directory, env={}))
asyncio.run(main())
"""


@dataclass(frozen=True)
class Site:
    """Where each row's two paths lead: the relayed workspace and the direct server, and the files to copy."""

    env: dict[str, str]  # what OpenSSH (and through it the ProxyCommand) runs with
    relayed_config: Path  # written by `appliance config-ssh`
    relayed_home: Path  # the agent's folder
    direct_config: Path
    direct_home: Path
    work: Path


def environment(work: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")} | {
        "PYTHONPATH": str(REPO_ROOT), "APPLIANCE_CONFIG_DIR": str(work / "cli")}


@contextlib.contextmanager
def direct_server(work: Path) -> Iterator[Path]:
    """The SSH server on loopback, and an OpenSSH config that logs in to it with a certificate."""
    ca, host, user = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(3))
    keys, home = work / "direct-keys", work / "direct-home"
    keys.mkdir()
    home.mkdir()
    host.write_private_key(keys / "host")
    user.write_private_key(keys / "user")
    (keys / "user").chmod(0o600)
    ca.generate_user_certificate(user, "bench", principals=["direct"], valid_before="+1d").write_certificate(
        keys / "user-cert.pub")
    (keys / "ca.pub").write_bytes(ca.export_public_key())
    server = subprocess.Popen([sys.executable, "-c", DIRECT_SERVER, str(keys / "host"), str(keys / "ca.pub"),
                               str(home)], stdout=subprocess.PIPE, text=True, env=environment(work))
    assert server.stdout is not None
    port = int(server.stdout.readline())
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host.export_public_key().decode().strip()}\n")
    config = work / "direct_config"
    config.write_text(f"Host direct\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {keys / 'user'}\n"
                      f"  CertificateFile {keys / 'user-cert.pub'}\n  IdentitiesOnly yes\n"
                      f"  UserKnownHostsFile {keys / 'known_hosts'}\n  StrictHostKeyChecking yes\n")
    try:
        yield config
    finally:
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def site(work: Path) -> Iterator[Site]:
    with control_plane(work, "bench_connections") as (conninfo, server, api):
        home = work / "agent-home"
        home.mkdir()
        seeded = seed_agent(api, conninfo, name="bench", dir=str(home))
        env = environment(work) | {"APPLIANCE_URL": server.url, "APPLIANCE_SESSION_TOKEN": api.token or ""}
        with agent_process(server.url, seeded.token, work / "agent", env={"APPLIANCE_LOG_LEVEL": "warning"}), \
                direct_server(work) as direct_config:
            wait_agent(api, seeded.agent_id, lambda a: a["status"] == "connected", home=work / "agent")
            relayed_config = work / "ssh_config"
            subprocess.run([sys.executable, "-m", "appliance", "config-ssh", "--ssh-config-file",
                            str(relayed_config)], env=env, check=True, capture_output=True)
            yield Site(env, relayed_config, home, direct_config, work / "direct-home", work)


def _scp(config: Path, env: dict[str, str], source: str, target: str) -> float:
    started = time.perf_counter()
    subprocess.run(["scp", "-q", "-F", str(config), source, target], env=env, check=True)
    return time.perf_counter() - started


def scp_throughput(where: Site, megabytes: int, rounds: int) -> None:
    """One row: scp up and down, direct and relayed, interleaved rounds, medians in MB/s."""
    local = where.work / "payload.bin"
    local.write_bytes(os.urandom(megabytes * MB))
    paths = {"direct": (where.direct_config, "direct"), "relayed": (where.relayed_config, "appliance.bench")}
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for name, (config, host) in paths.items():
            up = _scp(config, where.env, str(local), f"{host}:payload.bin")
            down = _scp(config, where.env, f"{host}:payload.bin", str(where.work / f"back-{name}.bin"))
            seconds.setdefault((name, "up"), []).append(up)
            seconds.setdefault((name, "down"), []).append(down)
    rate = {key: megabytes / statistics.median(values) for key, values in seconds.items()}
    print(f"scp of {megabytes} MB, median of {rounds} rounds (load average {os.getloadavg()[0]:.2f}):")
    print("  direct  = OpenSSH scp -> TCP 127.0.0.1 -> the agent's SSH server code (serve_session), own process")
    print("  relayed = OpenSSH scp -> appliance ssh --stdio -> relay -> agent process -> the same server code")
    for direction in ("up", "down"):
        direct, relayed = rate["direct", direction], rate["relayed", direction]
        print(f"  {direction:<4} direct {direct:7.1f} MB/s   relayed {relayed:7.1f} MB/s   "
              f"ratio {relayed / direct:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=50, help="size of each scp copy")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--keys", type=int, default=KEYS, help="keystrokes timed per terminal path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as work, site(Path(work)) as where:
        scp_throughput(where, args.megabytes, args.rounds)
    print("web terminal keystroke echo:")
    rows = keystroke_rows(args.keys)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
