"""`appliance ping|speedtest WS`: round trips and throughput to a workspace's agent, through the relay."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Literal

import click

from appliance.cli.builds import resolve_workspace
from appliance.cli.client import ApiClient, with_client
from appliance.relay.dial import ECHO, SINK, SOURCE, Session, agent_of, open_session
from appliance.sdk.agents import REGION_ID, REGION_NAME, PairResponse

BLOCK = 64 << 10

agent_option = click.option("--agent", default="", metavar="NAME",
                            help="The agent to reach, when the workspace has more than one.")


def path_of(pairing: PairResponse) -> str:
    """How the bytes travel, in the words `coder ping` uses: through the relay's region, never direct."""
    regions = [r for r in pairing.derp_map.Regions.values() if r.RegionID == REGION_ID]
    name = regions[0].RegionName if regions else REGION_NAME
    return f"via DERP relay, never direct (region {REGION_ID} {name})"


@click.command()
@click.argument("workspace")
@click.option("--count", "-n", default=5, show_default=True, type=click.IntRange(1, 10_000),
              help="How many round trips.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.0, 60.0),
              help="Seconds between round trips.")
@agent_option
@with_client
def ping(workspace: str, count: int, interval: float, agent: str, client: ApiClient) -> None:
    """Measure round trips to a workspace's agent; every byte goes through the relay."""
    found = resolve_workspace(client, workspace)
    asyncio.run(_ping(client, found.name, agent_of(found, agent), count, interval))


async def _ping(client: ApiClient, name: str, agent_id: str, count: int, interval: float) -> None:
    async with open_session(client, agent_id, kind="ping") as session:
        echo = await session.ssh.create_process(subsystem=ECHO, encoding=None)
        rtts: list[float] = []
        for number in range(1, count + 1):
            payload = os.urandom(16)
            started = time.perf_counter()
            echo.stdin.write(payload)
            await echo.stdout.readexactly(len(payload))
            rtts.append(time.perf_counter() - started)
            to_relay = await session.relay.ping()
            click.echo(f"pong {number} from {name} {path_of(session.pairing)} in {rtts[-1] * 1000:.2f} ms "
                       f"(you to the relay {to_relay * 1000:.2f} ms)")
            if number < count:
                await asyncio.sleep(interval)
        echo.close()
    click.echo(f"{count} round trips to {name}: min {min(rtts) * 1000:.2f} ms, "
               f"median {statistics.median(rtts) * 1000:.2f} ms, max {max(rtts) * 1000:.2f} ms")


@click.command()
@click.argument("workspace")
@click.option("--seconds", "-t", default=5, show_default=True, type=click.IntRange(1, 300),
              help="How long to send.")
@click.option("--direction", type=click.Choice(["down", "up"]), default="down", show_default=True,
              help="down: the agent sends to you; up: you send to the agent.")
@agent_option
@with_client
def speedtest(workspace: str, seconds: int, direction: Literal["down", "up"], agent: str,
              client: ApiClient) -> None:
    """Measure throughput to or from a workspace's agent through the relay, encrypted end to end."""
    found = resolve_workspace(client, workspace)
    asyncio.run(_speedtest(client, found.name, agent_of(found, agent), seconds, direction))


async def _speedtest(client: ApiClient, name: str, agent_id: str, seconds: int,
                     direction: Literal["down", "up"]) -> None:
    async with open_session(client, agent_id, kind="speedtest") as session:
        click.echo(f"Speed test {direction} with {name} {path_of(session.pairing)}, for {seconds} s:")
        measure = _download if direction == "down" else _upload
        total, elapsed = await measure(session, seconds)
    click.echo(f"Total {direction}: {_rate(total, elapsed)} ({total / 1e6:.1f} MB in {elapsed:.2f} s)")


def _rate(count: int, seconds: float) -> str:
    return f"{count * 8 / max(seconds, 1e-9) / 1e6:.1f} Mbit/s"


class _Intervals:
    """Prints a line per second of what moved in that second, as iperf does."""

    def __init__(self) -> None:
        self.start = self.mark = time.perf_counter()
        self.total = self.since_mark = 0

    def add(self, count: int) -> None:
        self.total += count
        self.since_mark += count
        now = time.perf_counter()
        if now - self.mark >= 1.0:
            click.echo(f"  {self.mark - self.start:5.2f}-{now - self.start:5.2f} s  "
                       f"{_rate(self.since_mark, now - self.mark)}")
            self.mark, self.since_mark = now, 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


async def _download(session: Session, seconds: int) -> tuple[int, float]:
    source = await session.ssh.create_process(subsystem=SOURCE, encoding=None)
    intervals = _Intervals()
    while intervals.elapsed() < seconds:
        intervals.add(len(await source.stdout.read(BLOCK)))
    elapsed = intervals.elapsed()
    source.close()
    return intervals.total, elapsed


async def _upload(session: Session, seconds: int) -> tuple[int, float]:
    sink = await session.ssh.create_process(subsystem=SINK, encoding=None)
    block, intervals = os.urandom(BLOCK), _Intervals()
    while intervals.elapsed() < seconds:
        sink.stdin.write(block)
        await sink.stdin.drain()
        intervals.add(len(block))
    sink.stdin.write_eof()
    received = int((await sink.stdout.readline()).decode() or 0)  # what the agent counted, not what we wrote
    return received, intervals.elapsed()
