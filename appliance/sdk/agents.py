"""The workspace agent and the relay on the wire: what the agent reports, how a client pairs, the DERP map.

Agent routes live under /api/v2/workspaceagents/me/ and authenticate with the agent's own token
(`Authorization: Bearer <agent token>`), never a user's. A client (the CLI, the console's terminal)
pairs with an agent through POST /api/v2/workspaceagents/{id}/pair with a user's session or token.
Keys travel as lowercase hex (relay node keys: 32-byte Curve25519) or OpenSSH lines (SSH keys).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from appliance.sdk.base import BigCount, Body, Line, Query, Text, Timestamp
from appliance.sdk.relay_constants import REGION_ID as REGION_ID
from appliance.sdk.relay_constants import RELAY_LATENCY_PATH as RELAY_LATENCY_PATH
from appliance.sdk.relay_constants import RELAY_PATH as RELAY_PATH

# Coder's lifecycle states, in the order an agent normally passes them.
LifecycleState = Literal["created", "starting", "start_timeout", "start_error", "ready", "shutting_down", "off"]
# Coder's connection status, computed from what the relay recorded and the template's timeout.
ConnectionStatus = Literal["connecting", "connected", "disconnected", "timeout"]

AGENT_BINARY_PATH = "/bin/appliance-agent-linux-amd64"  # what the init script downloads
AGENT_URL_ENV = "APPLIANCE_AGENT_URL"  # the access URL, as the init script exports it
AGENT_TOKEN_ENV = "APPLIANCE_AGENT_TOKEN"  # noqa: S105 (the variable name, not a token)
REGION_CODE = "appliance"
REGION_NAME = "Appliance Embedded Relay"
NODE_KEY_HEX = r"^[0-9a-f]{64}$"
# The only hosts the agent forwards to (direct-tcpip), so the only ones an app URL may name.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_LOG_BATCH = 1000  # lines per PATCH .../me/logs
MAX_LOG_LINE_CHARS = 4096
METADATA_VALUE_CHARS = 4096
# What a pairing is for: the connection audit records it (terminal: the console's web terminal,
# app: the console's path-based app proxy; the rest are CLI commands and OpenSSH through --stdio).
ConnectionKind = Literal["ssh", "terminal", "port-forward", "app", "ping", "speedtest"]
# Coder's app health: disabled (no healthcheck), initializing (none answered yet), healthy, unhealthy.
AppHealth = Literal["disabled", "initializing", "healthy", "unhealthy"]
MAX_LISTENING_PORTS = 1000  # per report: the agent sends the lowest ports when more listen
MAX_APPS = 100  # health changes per report


# --- DERP map (Coder's tailcfg.DERPMap shape, one embedded region) ---

class DerpNode(BaseModel):
    Name: str
    RegionID: int
    HostName: str
    DERPPort: int
    STUNPort: int = -1  # no STUN, ever
    ForceHTTP: bool = False
    CanPort80: bool = False


class DerpRegion(BaseModel):
    RegionID: int
    RegionCode: str
    RegionName: str
    EmbeddedRelay: bool = True
    Nodes: list[DerpNode]


class DerpMap(BaseModel):
    Regions: dict[str, DerpRegion]
    # Ours: the URL a DERP client dials (https://host:port/derp), so nobody rebuilds it from the node.
    RelayURL: str


# --- the agent's side ---

class AgentMetadataDescription(BaseModel):
    key: str
    display_name: str
    script: str
    interval: int  # seconds between runs
    timeout: int  # seconds a run may take


class AppHealthcheck(BaseModel):
    url: str  # fetched from inside the workspace; any answer below 500 counts as healthy (Coder's rule)
    interval: int  # seconds between checks
    threshold: int  # consecutive failures that make the app unhealthy


class AgentApp(BaseModel):
    """An app the template declares on this agent; the agent checks the health of those with a healthcheck."""

    id: str
    slug: str
    url: str
    healthcheck: AppHealthcheck | None


class AgentManifest(BaseModel):
    """GET /api/v2/workspaceagents/me/manifest: what the agent needs to do its job."""

    agent_id: str
    agent_name: str
    workspace_id: str
    workspace_name: str
    owner_name: str
    directory: str
    env: dict[str, str]
    startup_script: str
    startup_script_timeout_seconds: int
    connection_timeout_seconds: int
    metadata: list[AgentMetadataDescription]
    derp_map: DerpMap
    # OpenSSH public key line of the control plane's SSH user CA: the agent's SSH server accepts a
    # client certificate this CA signed for principal agent_id, and nothing else.
    ssh_user_ca: str
    apps: list[AgentApp] = Field(default_factory=list)


class AgentRelayRequest(Body):
    """POST /api/v2/workspaceagents/me/relay: vouch for this agent's relay key; report its SSH host key."""

    node_key: str = Field(pattern=NODE_KEY_HEX)
    ssh_host_key: Line = Field(max_length=8192)
    version: Line = Field(default="", max_length=64)


class AgentRelayResponse(BaseModel):
    node_key: str
    expires_at: Timestamp  # register again before this (the agent renews at half-life)


class LifecycleRequest(Body):
    """POST /api/v2/workspaceagents/me/report-lifecycle."""

    state: LifecycleState
    changed_at: Timestamp


class AgentLogLine(Body):
    created_at: Timestamp
    output: Text = Field(max_length=MAX_LOG_LINE_CHARS)
    level: Literal["debug", "info", "warn", "error"] = "info"


class AgentLogsRequest(Body):
    """PATCH /api/v2/workspaceagents/me/logs: a batch of startup script output, in order."""

    logs: list[AgentLogLine] = Field(max_length=MAX_LOG_BATCH)


class MetadataResult(Body):
    key: Line = Field(max_length=128)
    value: Text = Field(default="", max_length=METADATA_VALUE_CHARS)
    error: Text = Field(default="", max_length=METADATA_VALUE_CHARS)
    collected_at: Timestamp


class MetadataRequest(Body):
    """POST /api/v2/workspaceagents/me/metadata: the latest result of some metadata blocks."""

    results: list[MetadataResult] = Field(max_length=100)


class ListeningPort(Body):
    """A TCP port something listens on inside the workspace (Coder's WorkspaceAgentListeningPort)."""

    port: int = Field(ge=1, le=65535)
    network: Literal["tcp"] = "tcp"
    process_name: Line = Field(default="", max_length=128)  # empty when the agent may not read it


class ListeningPortsRequest(Body):
    """POST /api/v2/workspaceagents/me/listening-ports: every port listening now (replaces the last report)."""

    ports: list[ListeningPort] = Field(max_length=MAX_LISTENING_PORTS)


class AppHealthRequest(Body):
    """POST /api/v2/workspaceagents/me/app-health: app id -> its new health (Coder's PostAppHealth)."""

    healths: dict[str, Literal["initializing", "healthy", "unhealthy"]] = Field(max_length=MAX_APPS)


# --- a client's side ---

class PairRequest(Body):
    """POST /api/v2/workspaceagents/{id}/pair: vouch for this client's relay key, certify its SSH key."""

    node_key: str = Field(pattern=NODE_KEY_HEX)
    ssh_public_key: Line = Field(max_length=8192)
    kind: ConnectionKind = Field(default="ssh", description="What the connection is for (the connection audit).")


class PairResponse(BaseModel):
    agent_id: str
    agent_node_key: str  # the only key this client's packets are forwarded to
    agent_ssh_host_key: str  # pin it: a relay that answers with another key is refused
    ssh_certificate: str  # OpenSSH certificate for ssh_public_key, principal agent_id, short-lived
    ssh_username: str
    derp_map: DerpMap
    expires_at: Timestamp


# --- what the console and CLI read ---

class AgentLogResponse(BaseModel):
    id: int
    created_at: Timestamp
    output: str
    level: str


class AgentLogsQuery(Query):
    """GET /api/v2/workspaceagents/{id}/logs: the lines after this id (0: from the start), oldest first."""

    after: BigCount = Field(default=0, description="Only lines with a larger id.")


class AgentLogListResponse(BaseModel):
    logs: list[AgentLogResponse]


class MetadataResponse(BaseModel):
    description: AgentMetadataDescription
    value: str
    error: str
    collected_at: Timestamp | None


class WorkspaceAgentResponse(BaseModel):
    """GET /api/v2/workspaceagents/{id}: Coder's status fields, with a hint when it is not connected."""

    id: str
    name: str
    workspace_id: str
    status: ConnectionStatus
    lifecycle_state: LifecycleState
    troubleshooting_hint: str  # what to check when status is timeout or disconnected; empty otherwise
    connection_timeout_seconds: int
    first_connected_at: Timestamp | None
    last_connected_at: Timestamp | None
    disconnected_at: Timestamp | None
    started_at: Timestamp | None
    ready_at: Timestamp | None
    version: str
    metadata: list[MetadataResponse]


class ListeningPortsResponse(BaseModel):
    """GET /api/v2/workspaceagents/{id}/listening-ports: what the agent last reported (none while disconnected)."""

    ports: list[ListeningPort]


class RelayStatsResponse(BaseModel):
    """GET /api/v2/relay: the region and the live counters the relay last wrote (owners)."""

    derp_map: DerpMap
    relays: list[RelayCounters]


class RelayCounters(BaseModel):
    relay_name: str
    region_id: int
    started_at: Timestamp
    updated_at: Timestamp
    counters: dict[str, int]  # peers, agents, clients, bytes_in, bytes_out, packets, drops, refusals, ...


RelayStatsResponse.model_rebuild()
