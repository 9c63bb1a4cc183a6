"""Relay throughput, added round-trip latency and memory, side by side with a direct loopback TCP copy.

What it measures, on loopback in one run (figures and ratios; nothing here asserts on timings):
- one stream's throughput: N MB over a direct TCP connection; the same bytes through the relay as
  a PeerStreams stream (client -> relay process -> agent); the same inside an SSH session through
  the relay (the sink subsystem `appliance speedtest --direction up` uses); and SSH over a direct
  socketpair, so the cipher's share and the relay's share can be told apart. Ratios are to direct.
- 16-byte round trips: direct TCP echo, through the relay (stream), through the relay and SSH (the
  echo subsystem `appliance ping` uses); p50/p99 and what the relay adds to direct's.
- the relay process's resident memory (VmRSS from /proc) idle and with N connected idle agents.
- the relay process's CPU time per bare copy, as a rate: what the relay alone could carry on a core
  of its own (both ends of the stream share this process, which is usually the slower stage).

How: a throwaway PostgreSQL cluster, migrated; the control plane in this process (the agent API and
pairing, as in the integration tests); the relay as its own process on the same database and key,
importing what `appliance relay serve` does. Agents register their node keys with their own tokens;
clients pair through the API, so the relay admits and pairs them as in production. Ratios from one
run compare; absolute figures depend on the host and what else it runs (the load average is printed).

    PYTHONPATH=. .venv/bin/python benchmarks/relay.py --megabytes 200 --rounds 3 --agents 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncssh
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from appliance.agent.sshd import serve_session  # noqa: E402
from appliance.db.migrate import apply_migrations  # noqa: E402
from appliance.pki.ssh_ca import ssh_user_ca  # noqa: E402
from appliance.relay.client import DerpClient  # noqa: E402
from appliance.relay.dial import CIPHERS, ECHO, SINK, connect_admitted, open_session, pair  # noqa: E402
from appliance.relay.keys import NodeKey  # noqa: E402
from appliance.relay.stream import PeerStreams  # noqa: E402
from appliance.sdk.client import Client  # noqa: E402
from tests.support.agents import agent_state, finish_build, seed_template  # noqa: E402
from tests.support.api import Api  # noqa: E402
from tests.support.postgres import conninfo_url, create_database, free_port, running_cluster  # noqa: E402
from tests.support.relay_agent import StandInAgent  # noqa: E402
from tests.support.server import live_server  # noqa: E402

BLOCK = 64 << 10
MB = 1 << 20
Copy = Callable[[bytes, int], Awaitable[float]]  # (block, megabytes) -> seconds


# --- the relay as its own process ---

# What `appliance relay serve` runs, on a TCP port instead of nginx's unix socket, importing no more than it.
RELAY_MAIN = """
import asyncio, resource, sys
from appliance.config import load_server_config
from appliance.db.database import Database
from appliance.relay import front
from appliance.relay.service import build_service
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
config = load_server_config({"config": None})

async def main():
    loop = asyncio.get_running_loop()
    async def listen(factory):
        return await loop.create_server(factory, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await front.run(build_service(config, Database(config.postgres_url)), listen, asyncio.Event())

asyncio.run(main())
"""


@contextlib.contextmanager
def relay_process(conninfo: str, pki_dir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {"PYTHONPATH": str(REPO_ROOT), "APPLIANCE_POSTGRES_URL": conninfo_url(conninfo),
            "APPLIANCE_PKI_DIR": str(pki_dir), "APPLIANCE_DATA_DIR": str(pki_dir.parent),
            "APPLIANCE_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-c", RELAY_MAIN, str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/derp/latency-check", timeout=2).ok:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("the relay process did not answer /derp/latency-check within 60 s")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- seeding: a workspace with many agents, each registering its node key with its token ---

def seed_agents(api: Api, conninfo: str, count: int) -> list[tuple[str, str]]:
    """(agent id, token) for `count` agents of one running workspace."""
    tokens = [os.urandom(16).hex() for _ in range(count)]
    resources = []
    for index, token in enumerate(tokens):
        [resource_] = json.loads(agent_state(token))["resources"]
        resources.append({**resource_, "name": f"agent{index}"})
    created = api.post("/api/v2/workspaces", json={"template": "agents", "name": "bench"})
    assert created.status_code == 201, created.text
    finish_build(conninfo, created.json()["latest_build"]["id"], json.dumps({"resources": resources}).encode())
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda t: (_agent_id(api.base, t), t), tokens))


def _agent_id(url: str, token: str) -> str:
    return Client(url, token).request("GET", "/api/v2/workspaceagents/me/manifest")["agent_id"]  # type: ignore[no-any-return]


def register(url: str, token: str, node: NodeKey, host_key: asyncssh.SSHKey) -> None:
    Client(url, token).request("POST", "/api/v2/workspaceagents/me/relay", body={
        "node_key": node.public_hex, "ssh_host_key": host_key.export_public_key().decode().strip()})


# --- the copies and the round trips ---

async def direct_copy(block: bytes, megabytes: int) -> float:
    """N MB over one loopback TCP connection, sender and receiver in this process."""
    done = asyncio.get_running_loop().create_future()

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(BLOCK):
            pass
        done.set_result(time.perf_counter())
        writer.close()

    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    started = time.perf_counter()
    for _ in range(megabytes * MB // len(block)):
        writer.write(block)
        await writer.drain()
    writer.write_eof()
    ended = await done
    writer.close()
    server.close()
    return float(ended - started)


class RelayedStream:
    """A client and an agent paired through the API, each with a DerpClient and PeerStreams."""

    def __init__(self, client: DerpClient, agent: DerpClient, agent_key: bytes) -> None:
        self.client, self.agent, self.agent_key = PeerStreams(client), PeerStreams(agent), agent_key
        self.derp = (client, agent)
        self.pumps = [asyncio.create_task(self.client.run()), asyncio.create_task(self.agent.run())]

    async def copy(self, block: bytes, megabytes: int) -> float:
        loop = asyncio.get_running_loop()
        sending = await self.client.connect(self.agent_key)
        _, receiving = await self.agent.accept()
        receiving.setblocking(False)
        sending.setblocking(False)
        started = time.perf_counter()

        async def send() -> None:
            for _ in range(megabytes * MB // len(block)):
                await loop.sock_sendall(sending, block)
            sending.shutdown(socket.SHUT_WR)

        async def receive() -> float:
            while await loop.sock_recv(receiving, BLOCK):
                pass
            return time.perf_counter()

        _, ended = await asyncio.gather(send(), receive())
        sending.close()
        receiving.close()
        return ended - started

    async def round_trips(self, count: int) -> list[float]:
        loop = asyncio.get_running_loop()
        near = await self.client.connect(self.agent_key)
        _, far = await self.agent.accept()
        near.setblocking(False)
        far.setblocking(False)
        echo = asyncio.create_task(_echo_socket(far))
        times = await _time_round_trips(count, lambda data: loop.sock_sendall(near, data),
                                        lambda n: _recv_exactly(near, n))
        echo.cancel()
        near.close()
        far.close()
        return times

    async def close(self) -> None:
        for pump in self.pumps:
            pump.cancel()
        for derp in self.derp:
            await derp.close()


async def _echo_socket(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while data := await loop.sock_recv(sock, BLOCK):
        await loop.sock_sendall(sock, data)


async def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    loop, data = asyncio.get_running_loop(), b""
    while len(data) < n:
        data += await loop.sock_recv(sock, n - len(data))
    return data


async def _time_round_trips(count: int, send: Callable[[bytes], Awaitable[Any]],
                            receive: Callable[[int], Awaitable[bytes]]) -> list[float]:
    payload, times = os.urandom(16), []
    for _ in range(count):
        started = time.perf_counter()
        await send(payload)
        await receive(len(payload))
        times.append(time.perf_counter() - started)
    return times


async def direct_round_trips(count: int) -> list[float]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(BLOCK):
            writer.write(data)
            await writer.drain()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    times = await _time_round_trips(count, send, reader.readexactly)
    writer.close()
    server.close()
    return times


async def ssh_copy(conn: asyncssh.SSHClientConnection, block: bytes, megabytes: int) -> float:
    sink = await conn.create_process(subsystem=SINK, encoding=None)
    started = time.perf_counter()
    for _ in range(megabytes * MB // len(block)):
        sink.stdin.write(block)
        await sink.stdin.drain()
    sink.stdin.write_eof()
    counted = int(await sink.stdout.readline())
    assert counted == megabytes * MB, f"the agent counted {counted} bytes"
    return time.perf_counter() - started


async def ssh_round_trips(conn: asyncssh.SSHClientConnection, count: int) -> list[float]:
    echo = await conn.create_process(subsystem=ECHO, encoding=None)

    async def send(data: bytes) -> None:
        echo.stdin.write(data)

    times = await _time_round_trips(count, send, echo.stdout.readexactly)
    echo.close()
    return times


@contextlib.asynccontextmanager
async def ssh_over_socketpair(agent: StandInAgent, agent_id: str) -> Any:
    """SSH to serve_session over a plain socketpair: the cipher's cost without the relay."""
    ca = asyncssh.generate_private_key("ssh-ed25519")
    user = asyncssh.generate_private_key("ssh-ed25519")
    near, far = socket.socketpair()
    server = asyncio.create_task(serve_session(far, host_key=agent.host_key, user_ca=ca.export_public_key().decode(),
                                               agent_id=agent_id, directory="/", env={}))
    pinned = agent.host_key.export_public_key()
    conn = await asyncssh.connect(agent_id, sock=near, username="bench", known_hosts=([pinned], [], []),
                                  client_keys=[(user, ca.generate_user_certificate(user, "b", principals=[agent_id]))],
                                  encoding=None, config=None, agent_path=None, compression_algs=["none"],
                                  encryption_algs=CIPHERS)
    try:
        yield conn
    finally:
        conn.close()
        await conn.wait_closed()
        await server


# --- the run ---

async def measure(url: str, relay_url: str, relay_pid: int, token: str, agents: list[tuple[str, str]],
                  args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"relay_rss_idle_mb": rss_mb(relay_pid)}
    # Memory first, on a relay that has carried nothing yet: N agents connect and stay idle.
    idle = await _connect_agents(relay_url, url, agents[2:args.agents + 2])
    await asyncio.sleep(3)
    results["relay_rss_agents_mb"] = rss_mb(relay_pid)
    results["idle_agents"] = len(idle)
    for derp in idle:
        await derp.close()

    agent_id, agent_token = agents[0]
    stand_in = StandInAgent(url, agent_token, "/", relay=relay_url)
    manifest = await asyncio.to_thread(stand_in.register)
    serving = asyncio.create_task(stand_in.serve(manifest))
    stream = await _relayed_stream(relay_url, Client(url, token), *agents[1])
    block = os.urandom(BLOCK)
    copies: dict[str, list[float]] = {"direct": [], "relay": [], "relay+ssh": [], "ssh": []}
    relay_cpu: list[float] = []  # the relay process's CPU seconds per bare relayed copy
    async with open_session(Client(url, token), agent_id, relay=relay_url) as session, \
            ssh_over_socketpair(stand_in, agent_id) as plain_ssh:
        runs: dict[str, Copy] = {
            "direct": direct_copy, "relay": stream.copy,
            "relay+ssh": lambda b, n: ssh_copy(session.ssh, b, n), "ssh": lambda b, n: ssh_copy(plain_ssh, b, n)}
        for _ in range(args.rounds):
            for name, copy in runs.items():
                before = cpu_seconds(relay_pid)
                copies[name].append(await copy(block, args.megabytes))
                if name == "relay":
                    relay_cpu.append(cpu_seconds(relay_pid) - before)
        trips = {"direct": await direct_round_trips(args.pings), "relay": await stream.round_trips(args.pings),
                 "relay+ssh": await ssh_round_trips(session.ssh, args.pings)}
    await stream.close()
    serving.cancel()
    results["throughput_mbit_s"] = {k: args.megabytes * MB * 8 / statistics.median(v) / 1e6 for k, v in copies.items()}
    # What the relay process alone could carry if it had a core to itself: bytes over its CPU time.
    results["relay_capacity_mbit_s"] = args.megabytes * MB * 8 / max(statistics.median(relay_cpu), 1e-3) / 1e6
    results["latency_ms"] = {k: _percentiles(v) for k, v in trips.items()}
    return results


async def _connect_agents(relay_url: str, url: str, agents: list[tuple[str, str]]) -> list[DerpClient]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    nodes = [NodeKey.generate() for _ in agents]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda pair_: register(url, pair_[0][1], pair_[1], host_key), zip(agents, nodes, strict=True)))
    connected: list[DerpClient] = []
    for start in range(0, len(nodes), 100):  # in batches, within the relay's accept burst
        connected += await asyncio.gather(*(connect_admitted(relay_url + "/derp", n) for n in nodes[start:start + 100]))
    return connected


async def _relayed_stream(relay_url: str, user: Client, agent_id: str, agent_token: str) -> RelayedStream:
    """Another agent and a client paired with it, both in this process, for the bare stream figures."""
    node, agent_node = NodeKey.generate(), NodeKey.generate()
    await asyncio.to_thread(register, user.url, agent_token, agent_node, asyncssh.generate_private_key("ssh-ed25519"))
    await asyncio.to_thread(pair, user, agent_id, node, asyncssh.generate_private_key("ssh-ed25519"))
    client = await connect_admitted(relay_url + "/derp", node)
    agent = await connect_admitted(relay_url + "/derp", agent_node)
    return RelayedStream(client, agent, agent_node.public)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]
    return {"p50": ordered[len(ordered) // 2] * 1000, "p99": p99 * 1000}


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    rates, lat = results["throughput_mbit_s"], results["latency_ms"]
    direct = rates["direct"]
    out = sys.stderr if args.json else sys.stdout
    print(f"load average {os.getloadavg()[0]:.2f}; {args.megabytes} MB x {args.rounds} rounds, median", file=out)
    print(f"{'throughput':<12}{'Mbit/s':>10}{'x direct':>10}", file=out)
    for name, rate in rates.items():
        print(f"{name:<12}{rate:>10.0f}{rate / direct:>10.2f}", file=out)
    capacity = results["relay_capacity_mbit_s"]
    print(f"{'relay CPU':<12}{capacity:>10.0f}{capacity / direct:>10.2f}  (bytes over the relay process's CPU "
          "time: its ceiling on a core of its own)", file=out)
    print(f"{'round trip':<12}{'p50 ms':>10}{'p99 ms':>10}{'+p50 ms':>10}{'+p99 ms':>10}", file=out)
    for name, p in lat.items():
        print(f"{name:<12}{p['p50']:>10.3f}{p['p99']:>10.3f}{p['p50'] - lat['direct']['p50']:>10.3f}"
              f"{p['p99'] - lat['direct']['p99']:>10.3f}", file=out)
    print(f"relay RSS: {results['relay_rss_idle_mb']:.1f} MB idle, {results['relay_rss_agents_mb']:.1f} MB with "
          f"{results['idle_agents']} idle agents connected (goal < 50 MB)", file=out)
    if args.json:
        print(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200, help="size of each copy")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--pings", type=int, default=1000, help="round trips per path")
    parser.add_argument("--agents", type=int, default=1000, help="idle agents connected for the memory figure")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    args = parser.parse_args()
    _raise_file_limit()
    with running_cluster() as cluster, tempfile.TemporaryDirectory(prefix="bench-relay-") as work:
        conninfo = create_database(cluster.conninfo("postgres"), "bench_relay")
        apply_migrations(conninfo)
        pki = Path(work) / "pki"
        ssh_user_ca(pki)  # made once up front, not by the first of many concurrent manifest requests
        with live_server(conninfo, pki_dir=pki) as server:
            api = Api(server.url)
            api.create_first_user("owner")
            api = api.as_user(api.login("owner"))
            seed_template(conninfo)
            agents = seed_agents(api, conninfo, args.agents + 2)
            with relay_process(conninfo, pki) as (relay_url, pid):
                results = asyncio.run(measure(server.url, relay_url, pid, api.token or "", agents, args))
    report(results, args)


if __name__ == "__main__":
    main()
