"""The gateway's SSH sessions to workspace agents, opened on a console user's behalf (ADR 0026).

The web terminal and the path-based app proxy are the console's own SSH client: the gateway pairs
in-process with the browser user's session or token (the same authorization as POST .../pair, so a
user without connect rights gets the API's 404/403 and a stopped workspace its 409), then dials
the relay like any client and logs in to the agent with a fresh, short-lived certificate. Every
byte to the agent crosses the relay, encrypted end to end by SSH; the relay sees ciphertext only.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import asyncssh
from aiohttp import web

from appliance.audit.record import RequestInfo
from appliance.config import ServerConfig
from appliance.db.database import Connection
from appliance.gateway.auth import presented_token, require_subject
from appliance.gateway.state import CONFIG, in_db
from appliance.pki.layout import PkiLayout
from appliance.relay.dial import Session, attach, relay_url
from appliance.relay.keys import NodeKey
from appliance.sdk.agents import ConnectionKind, PairResponse
from appliance.workspaces import pairing
from appliance.workspaces.relay import derp_map


def request_info(request: web.Request) -> RequestInfo:
    """Where the browser is, for the audit log: nginx's X-Real-IP when installed, else the peer."""
    ip = request.headers.get("X-Real-IP") or request.remote
    return RequestInfo(ip=ip, user_agent=request.headers.get("User-Agent", "")[:512],
                       request_id=request.headers.get("X-Request-Id", ""))


def relay_context(config: ServerConfig) -> ssl.SSLContext | None:
    """TLS to the relay at the access URL: the system's trust plus the internal CA's bundle, if there is one."""
    if not config.access_url.startswith("https:"):
        return None
    context = ssl.create_default_context()
    bundle = PkiLayout(config.pki_dir).trust_bundle
    if bundle.is_file():
        context.load_verify_locations(cafile=str(bundle))
    return context


def _pair(conn: Connection, token: str | None, info: RequestInfo, config: ServerConfig, agent_ref: str,
          node: NodeKey, ssh_key: asyncssh.SSHKey, kind: ConnectionKind, shared_app: str | None) -> PairResponse:
    subject = require_subject(conn, token)
    return pairing.pair(conn, subject, info, agent_ref, node_key=node.public,
                        ssh_public_key=ssh_key.export_public_key().decode().strip(), ca=pairing.user_ca(config.pki_dir),
                        derp=derp_map(config.access_url), kind=kind, shared_app=shared_app)


@contextlib.asynccontextmanager
async def agent_session(request: web.Request, agent_ref: str, kind: ConnectionKind, *,
                        shared_app: str | None = None) -> AsyncIterator[Session]:
    """Pair as the requesting user, dial the relay at the access URL, log in to the agent over SSH.

    `shared_app`: the slug of the app this session is for; when the template shares it, a user who
    may not connect to the workspace pairs too (the app proxy then forwards to that app only).

    Raises the API's RequestErrors (401, 403, 404, 409) before anything is dialled, and
    OperatorError when the relay or the agent cannot be reached.
    """
    config = request.app[CONFIG]
    node, ssh_key = NodeKey.generate(), asyncssh.generate_private_key("ssh-ed25519")
    paired = await in_db(request.app, _pair, presented_token(request), request_info(request), config, agent_ref,
                         node, ssh_key, kind, shared_app)
    async with attach(paired, node, ssh_key, relay_url(config.access_url), relay_context(config)) as session:
        yield session

