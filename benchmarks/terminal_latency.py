"""Web-terminal keystroke echo latency: through the gateway and the relay, beside a local PTY.

What it measures, on loopback in one run (figures and a ratio; nothing here asserts on timings):
- local: a login shell on a PTY of this process; one keystroke written to the master, timed until the
  shell's echo of it comes back (readline echoes each key itself, as in the web terminal);
- web terminal: the same keystroke as the browser sends it, a {"data": "x"} WebSocket frame to the
  gateway (GET /api/v2/workspaceagents/{id}/pty), which carries it over SSH through the relay to a
  stand-in agent's reconnecting PTY (appliance/agent/rpty.py), timed until the binary frame holding
  the echo arrives. The gateway, the relay and the agent all run here, on loopback.
Each run types KEYS keystrokes one at a time (a line is cleared every LINE keys) and reports
p50/p99 of each and what the gateway and the relay add at p50.

    PYTHONPATH=. .venv/bin/python benchmarks/terminal_latency.py [--keys 400]

`keystroke_rows()` returns (label, value) rows for benchmarks/connections.py to print beside its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from appliance.agent.rpty import resize, take_terminal  # noqa: E402
from appliance.db.migrate import apply_migrations  # noqa: E402
from appliance.pki.ssh_ca import ssh_user_ca  # noqa: E402
from tests.support.agents import seed_agent, seed_template  # noqa: E402
from tests.support.api import Api  # noqa: E402
from tests.support.postgres import create_database, running_cluster  # noqa: E402
from tests.support.relay_agent import StandInAgent, agent_in_thread  # noqa: E402
from tests.support.server import LiveServer, live_server  # noqa: E402
from tests.support.terminal import WebTerminal, terminal_url, web_terminal  # noqa: E402

KEYS = 400
LINE = 40  # keystrokes per line before a Ctrl-U clears it, so the echo stays one character
PROMPT = "READY> "
SET_PROMPT = "PS1='READ''Y> '\r"  # the command's echo does not hold the prompt it sets
Echo = Callable[[str], Awaitable[None]]  # type one key, return when its echo is back


def _shell() -> list[str]:
    return [os.environ.get("SHELL") or pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh", "-l"]


async def _time_keys(echo: Echo, keys: int) -> list[float]:
    """Milliseconds from each keystroke to its echo."""
    samples = []
    for index in range(keys):
        if index and index % LINE == 0:
            await echo("\x15")  # Ctrl-U: the line is cleared (its echo is the redraw, not timed)
        started = time.perf_counter()
        await echo("x")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def local_pty(keys: int) -> list[float]:
    """Keystroke echo from a login shell on a PTY of this process: the floor for any terminal."""
    master, slave = os.openpty()
    resize(master, (80, 24, 0, 0))
    child = subprocess.Popen(  # noqa: ASYNC220 (returns at once; it is killed, not waited for, below)
        _shell(), stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=take_terminal,
        env={**os.environ, "TERM": "xterm-256color"})
    os.close(slave)
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[bytes] = asyncio.Queue()
    loop.add_reader(master, lambda: arrived.put_nowait(os.read(master, 4096)))

    async def until(text: bytes) -> None:
        seen = b""
        while text not in seen:
            seen += await arrived.get()

    async def echo(key: str) -> None:
        os.write(master, key.encode())
        await until(key.encode() if key != "\x15" else b"")

    try:
        os.write(master, SET_PROMPT.encode())
        await asyncio.wait_for(until(PROMPT.encode()), 30)
        await asyncio.sleep(0.2)
        while not arrived.empty():
            arrived.get_nowait()
        return await _time_keys(echo, keys)
    finally:
        loop.remove_reader(master)
        child.kill()
        child.wait()
        os.close(master)


async def web_terminal_keys(terminal: WebTerminal, keys: int) -> list[float]:
    async def echo(key: str) -> None:
        await terminal.type(key)
        if key == "\x15":
            await asyncio.sleep(0.01)  # let the redraw arrive; it is not timed
            terminal.text = ""
            return
        while True:
            message = await terminal.ws.receive()
            if key in message.data.decode(errors="replace"):
                return

    await terminal.type(SET_PROMPT)
    await terminal.until(PROMPT)
    await asyncio.sleep(0.2)
    return await _time_keys(echo, keys)


async def through_gateway(url: str, agent_id: str, token: str, keys: int) -> list[float]:
    async with web_terminal(terminal_url(url, agent_id, str(uuid.uuid4())), token=token, origin=None,
                            cookie=False) as terminal:
        return await web_terminal_keys(terminal, keys)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(keys: int = KEYS) -> dict[str, list[float]]:
    """Both sample sets: a throwaway PostgreSQL cluster, the control plane with its gateway and relay on
    one port (as `appliance server`), and a stand-in agent dialling the relay."""
    local = asyncio.run(local_pty(keys))
    with tempfile.TemporaryDirectory(prefix="terminal-bench-") as work, \
            control_plane(Path(work), "terminal_bench") as (conninfo, server, owner):
        seeded = seed_agent(owner, conninfo)
        with agent_in_thread(StandInAgent(server.url, seeded.token, work)):
            relayed = asyncio.run(through_gateway(server.url, seeded.agent_id, owner.token or "", keys))
    return {"local": local, "relayed": relayed}


@contextlib.contextmanager
def control_plane(work: Path, database: str) -> Iterator[tuple[str, LiveServer, Api]]:
    """A throwaway PostgreSQL cluster and the control plane on it (gateway and relay on one port, an SSH
    user CA in `work`), an owner logged in and the agents template seeded: (conninfo, server, owner)."""
    with running_cluster() as cluster:
        conninfo = create_database(cluster.conninfo("postgres"), database)
        apply_migrations(conninfo)
        pki = work / "pki"
        ssh_user_ca(pki)
        with live_server(conninfo, pki_dir=pki) as server:
            owner = Api(server.url)
            owner.create_first_user("owner")
            owner = owner.as_user(owner.login("owner"))
            seed_template(conninfo)
            yield conninfo, server, owner


def keystroke_rows(keys: int = KEYS) -> list[tuple[str, str]]:
    """(label, formatted value) rows: p50/p99 local and through the gateway and relay, and what they add."""
    samples = measure(keys)
    local, relayed = samples["local"], samples["relayed"]
    p50_local, p50_relayed = statistics.median(local), statistics.median(relayed)
    return [
        ("keystroke echo, local PTY, p50", f"{p50_local:.2f} ms"),
        ("keystroke echo, local PTY, p99", f"{_percentile(local, 0.99):.2f} ms"),
        ("keystroke echo, web terminal (gateway + relay + SSH), p50", f"{p50_relayed:.2f} ms"),
        ("keystroke echo, web terminal (gateway + relay + SSH), p99", f"{_percentile(relayed, 0.99):.2f} ms"),
        ("keystroke echo, added by gateway + relay, p50", f"{p50_relayed - p50_local:.2f} ms"),
        ("keystroke echo, web terminal / local, p50", f"{p50_relayed / p50_local:.1f}x"),
        ("keystrokes timed", f"{len(relayed)} each; load average {os.getloadavg()[0]:.2f}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=KEYS, help="keystrokes timed per path")
    args = parser.parse_args()
    rows = keystroke_rows(args.keys)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
