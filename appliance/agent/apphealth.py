"""App healthchecks: each app with a healthcheck is fetched from inside the workspace every interval.

Coder's states and rules: an app starts initializing; any answer below 500 makes it healthy at once;
`threshold` failures in a row (no answer within the interval, or a 5xx) make it unhealthy. Changes
are sent to the control plane as they happen; a failed send is sent again with the next change or
after a short wait, so the console never keeps a stale state for long.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

from appliance.errors import OperatorError
from appliance.sdk.agents import AgentApp, AppHealth, AppHealthcheck

log = logging.getLogger("appliance.agent.apphealth")

RETRY_SECONDS = 2.0
SERVER_ERROR = 500
# Never through a proxy from the environment: the URL is inside the workspace (usually localhost).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Send = Callable[[dict[str, AppHealth]], Awaitable[None]]


def answers(url: str, timeout: float) -> bool:
    """Whether the app answered below 500 within `timeout` seconds."""
    if not url.startswith(("http://", "https://")):
        return False
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status) < SERVER_ERROR
    except urllib.error.HTTPError as err:
        return err.code < SERVER_ERROR
    except (OSError, ValueError):  # refused, timed out, a bad URL: no answer
        return False


def next_health(current: AppHealth, is_up: bool, failures: int, threshold: int) -> AppHealth:
    if is_up:
        return "healthy"
    return "unhealthy" if failures >= threshold else current


class AppHealthChecks:
    """The health of each checked app, and the changes not yet sent."""

    def __init__(self, apps: list[AgentApp]) -> None:
        self.checks: dict[str, AppHealthcheck] = {a.id: a.healthcheck for a in apps if a.healthcheck is not None}
        self.health: dict[str, AppHealth] = dict.fromkeys(self.checks, "initializing")
        self.unsent: dict[str, AppHealth] = dict(self.health)
        self.changed = asyncio.Event()

    async def run(self, send: Send) -> None:
        if not self.checks:
            return
        self.changed.set()  # the first report says initializing: an agent restarted mid-build starts over
        async with asyncio.TaskGroup() as group:
            for app_id in self.checks:
                group.create_task(self._watch(app_id), name=f"apphealth-{app_id}")
            group.create_task(self._report(send), name="apphealth-report")

    async def _watch(self, app_id: str) -> None:
        check, failures = self.checks[app_id], 0
        while True:
            is_up = await asyncio.to_thread(answers, check.url, check.interval)
            failures = 0 if is_up else failures + 1
            health = next_health(self.health[app_id], is_up, failures, check.threshold)
            if health != self.health[app_id]:
                log.info("app_health_changed", extra={"app_id": app_id, "health": health, "failures": failures})
                self.health[app_id] = self.unsent[app_id] = health
                self.changed.set()
            await asyncio.sleep(check.interval)

    async def _report(self, send: Send) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            batch, self.unsent = self.unsent, {}
            try:
                await send(batch)
            except OperatorError as err:
                log.warning("app_health_not_sent", extra={"reason": err.message})
                self.unsent = {**batch, **self.unsent}
                await asyncio.sleep(RETRY_SECONDS)
                self.changed.set()
