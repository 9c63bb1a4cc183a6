"""The agent's calls to the control plane (/api/v2/workspaceagents/me/...), through the sdk's one client.

The client retries connection errors and 502/503 with backoff and jitter; the calls block, so the
agent runs them on a thread (asyncio.to_thread) and its event loop keeps serving sessions.
"""

from __future__ import annotations

from datetime import UTC, datetime

from appliance import __version__
from appliance.agent.settings import AgentSettings
from appliance.sdk.agents import (
    AgentLogLine,
    AgentLogsRequest,
    AgentManifest,
    AgentRelayRequest,
    AgentRelayResponse,
    AppHealth,
    AppHealthRequest,
    LifecycleRequest,
    LifecycleState,
    ListeningPort,
    ListeningPortsRequest,
    MetadataRequest,
    MetadataResult,
)
from appliance.sdk.client import Client, retry_policy

ME = "/api/v2/workspaceagents/me"


class ControlPlane:
    def __init__(self, settings: AgentSettings, timeout: float = 30.0, *, attempts: int = 6) -> None:
        self.client = Client(settings.url, settings.token, ca_file=settings.ca_file, timeout=timeout,
                             user_agent=f"appliance-agent/{__version__}", retries=retry_policy(attempts))

    def manifest(self) -> AgentManifest:
        return self.client.call("GET", f"{ME}/manifest", AgentManifest)

    def register_relay(self, node_key_hex: str, ssh_host_key: str) -> AgentRelayResponse:
        request = AgentRelayRequest(node_key=node_key_hex, ssh_host_key=ssh_host_key, version=__version__)
        return self.client.call("POST", f"{ME}/relay", AgentRelayResponse, body=request)

    def report_lifecycle(self, state: LifecycleState) -> None:
        body = LifecycleRequest(state=state, changed_at=datetime.now(UTC))
        self.client.request("POST", f"{ME}/report-lifecycle", body=body.model_dump(mode="json"))

    def send_logs(self, lines: list[AgentLogLine]) -> None:
        self.client.request("PATCH", f"{ME}/logs", body=AgentLogsRequest(logs=lines).model_dump(mode="json"))

    def send_metadata(self, results: list[MetadataResult]) -> None:
        body = MetadataRequest(results=results)
        self.client.request("POST", f"{ME}/metadata", body=body.model_dump(mode="json"))

    def send_listening_ports(self, ports: list[ListeningPort]) -> None:
        body = ListeningPortsRequest(ports=ports)
        self.client.request("POST", f"{ME}/listening-ports", body=body.model_dump(mode="json"))

    def send_app_health(self, healths: dict[str, AppHealth]) -> None:
        body = AppHealthRequest.model_validate({"healths": healths})
        self.client.request("POST", f"{ME}/app-health", body=body.model_dump(mode="json"))
