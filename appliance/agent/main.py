"""The agent's life: fetch the manifest, run the startup script, stay on the relay, report metadata, stop cleanly.

Lifecycle states are reported in Coder's order: starting, then ready, start_error or start_timeout
(then ready or start_error once a slow script ends), and on SIGTERM shutting_down then off.
The relay link, metadata, listening ports and app healthchecks run beside the startup script: a
developer may connect while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import asyncssh

from appliance import __version__
from appliance.agent.apphealth import AppHealthChecks
from appliance.agent.backoff import Backoff
from appliance.agent.controlplane import ControlPlane
from appliance.agent.metadata import report_metadata
from appliance.agent.ports import report_listening_ports
from appliance.agent.relay import RelayLink, SessionSpec
from appliance.agent.settings import AgentSettings
from appliance.agent.startup import LogShipper, Script, run_startup_script
from appliance.errors import OperatorError
from appliance.logs import configure_logging
from appliance.sdk.agents import (
    AGENT_TOKEN_ENV,
    AgentLogLine,
    AgentManifest,
    AppHealth,
    LifecycleState,
    ListeningPort,
    MetadataResult,
)
from appliance.sdk.client import ApiError

log = logging.getLogger("appliance.agent")

STOP_SECONDS = 5.0  # for each step of stopping: podman's default stop timeout is 10 s


def main() -> int:
    configure_logging("json")
    try:
        settings = AgentSettings.from_env(os.environ)
    except OperatorError as err:
        log.error("agent_misconfigured", extra={"reason": err.message, "hint": err.hint})
        return 2
    log.info("agent_starting", extra={"version": __version__, "url": settings.url, "pid": os.getpid()})
    loop = asyncio.new_event_loop()
    code = loop.run_until_complete(Agent(settings).run())
    logging.shutdown()
    # Not asyncio.run's or the interpreter's clean exit: both wait for threads still retrying a call to a
    # control plane that is away, and podman kills a container that does not stop within 10 s.
    os._exit(code)


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.api = ControlPlane(settings)
        # Once SIGTERM came, a control plane that is away gets one quick try, not a minute of retries.
        self.last_words = ControlPlane(settings, timeout=STOP_SECONDS / 2, attempts=1)
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        manifest = await self._manifest()
        if manifest is None:
            return 0
        directory = working_directory(manifest.directory)
        env = session_env(manifest, directory)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        link = RelayLink(self.api, self.settings, SessionSpec(host_key, manifest.ssh_user_ca, manifest.agent_id,
                                                              directory, env))
        background = [asyncio.create_task(link.run(), name="relay"),
                      asyncio.create_task(report_metadata(manifest.metadata, directory, env, self._send_metadata),
                                          name="metadata"),
                      asyncio.create_task(report_listening_ports(self._send_ports), name="listening-ports"),
                      asyncio.create_task(AppHealthChecks(manifest.apps).run(self._send_app_health),
                                          name="app-health")]
        startup = asyncio.create_task(self._start(manifest, directory, env), name="startup")
        await self.stopping.wait()
        await self._report("shutting_down", self.last_words)
        for task in [startup, *background]:
            task.cancel()
        # A startup log batch still waiting for an unreachable control plane must not hold the container up.
        await asyncio.wait([startup, *background], timeout=STOP_SECONDS)
        await self._report("off", self.last_words)
        log.info("agent_stopped")
        return 0

    async def _manifest(self) -> AgentManifest | None:
        """The manifest, asked for until the control plane answers (or SIGTERM comes first)."""
        backoff = Backoff(first=1.0, cap=30.0)
        while not self.stopping.is_set():
            try:
                manifest = await asyncio.to_thread(self.api.manifest)
            except OperatorError as err:
                delay = backoff.next_delay()
                event = "agent_token_refused" if isinstance(err, ApiError) and err.status == 401 else "manifest_failed"
                log.warning(event, extra={"reason": err.message, "hint": err.hint, "retry_in": round(delay, 1)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                continue
            log.info("manifest_received", extra={"agent_id": manifest.agent_id, "workspace": manifest.workspace_name,
                                                 "metadata_blocks": len(manifest.metadata)})
            return manifest
        return None

    async def _start(self, manifest: AgentManifest, directory: str, env: dict[str, str]) -> None:
        await self._report("starting")
        shipper = LogShipper(self._send_logs)
        shipper.start()
        script = Script(manifest.startup_script, directory, env, manifest.startup_script_timeout_seconds)
        try:
            state = await run_startup_script(script, shipper, lambda: self._report("start_timeout"))
        finally:
            await shipper.close()
        await self._report(state)

    async def _report(self, state: LifecycleState, api: ControlPlane | None = None) -> None:
        try:
            await asyncio.to_thread((api or self.api).report_lifecycle, state)
        except OperatorError as err:
            log.error("lifecycle_not_reported", extra={"state": state, "reason": str(err)})
            return
        log.info("lifecycle_changed", extra={"state": state})

    async def _send_logs(self, lines: list[AgentLogLine]) -> None:
        await asyncio.to_thread(self.api.send_logs, lines)

    async def _send_metadata(self, results: list[MetadataResult]) -> None:
        await asyncio.to_thread(self.api.send_metadata, results)

    async def _send_ports(self, ports: list[ListeningPort]) -> None:
        await asyncio.to_thread(self.api.send_listening_ports, ports)

    async def _send_app_health(self, healths: dict[str, AppHealth]) -> None:
        await asyncio.to_thread(self.api.send_app_health, healths)


def working_directory(wanted: str) -> str:
    """The manifest's directory (~ expanded), made when missing; the home directory when it cannot be."""
    path = Path(wanted or "~").expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fallback = str(Path.home())
        log.warning("directory_unusable", extra={"directory": str(path), "reason": err.strerror,
                                                 "using": fallback})
        return fallback
    return str(path)


def session_env(manifest: AgentManifest, directory: str) -> dict[str, str]:
    """The environment of the startup script, metadata scripts and sessions: ours, the template's, never the token."""
    env = {**os.environ, **manifest.env}
    env.pop(AGENT_TOKEN_ENV, None)
    env.setdefault("HOME", str(Path.home()))
    env["APPLIANCE_WORKSPACE_NAME"] = manifest.workspace_name
    env["APPLIANCE_WORKSPACE_AGENT_NAME"] = manifest.agent_name
    return env
