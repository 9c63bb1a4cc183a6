"""Load helpers: many concurrent log followers, and a /healthz probe that records the slowest answer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import requests

from tests.support.api import Api


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class HealthProbe:
    """Polls /healthz from its own thread; notes each answer's time, failures, and peak RSS of `pid`."""

    url: str
    pid: int
    interval: float = 0.25
    slowest: float = 0.0
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    peak_rss_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthProbe:
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.wait(self.interval):
            started = time.monotonic()
            try:
                response = session.get(self.url + "/healthz", timeout=5)
                ok = response.status_code == 200 and response.text == "OK"
                if not ok:
                    self.failures.append(f"{response.status_code} {response.text[:80]}")
            except requests.RequestException as err:
                self.failures.append(repr(err))
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.answers += 1
            self.peak_rss_kib = max(self.peak_rss_kib, rss_kib(self.pid))


@dataclass
class Followed:
    ids: list[int] = field(default_factory=list)
    end: dict[str, str] | None = None
    error: str = ""


async def _follow(session: aiohttp.ClientSession, url: str, token: str) -> Followed:
    got = Followed()
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200 or not response.headers["Content-Type"].startswith("text/event-stream"):
                got.error = f"{response.status} {await response.text()}"
                return got
            name = ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: ") and name == "log":
                    got.ids.append(json.loads(line.removeprefix("data: "))["id"])
                elif line.startswith("data: ") and name == "end":
                    got.end = json.loads(line.removeprefix("data: "))
                    return got
    except (aiohttp.ClientError, TimeoutError) as err:
        got.error = repr(err)
    return got


async def follow_concurrently(base: str, path: str, token: str, count: int) -> list[Followed]:
    """`count` followers of base+path, opened at once, each read until its `end` event."""
    timeout = aiohttp.ClientTimeout(total=600, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        return await asyncio.gather(*(_follow(session, base + path, token) for _ in range(count)))


def all_log_ids(api: Api, build_id: str) -> list[int]:
    """Every log line id of a finished build, read as JSON page by page."""
    ids: list[int] = []
    while True:
        page = api.get(f"/api/v2/workspacebuilds/{build_id}/logs?after={ids[-1] if ids else 0}").json()["logs"]
        if not page:
            return ids
        ids += [line["id"] for line in page]
