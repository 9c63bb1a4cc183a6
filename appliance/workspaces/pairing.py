"""Pairing a client with an agent: vouch for the client's relay key, certify its SSH key (docs/adr/0024).

Only a user who may connect to the workspace pairs with its agent: its owner, and site owners, as
Coder's matrix has it (update on the workspace is what connecting needs here). Everyone else gets
the 404 an unknown agent gets; except that the gateway pairs on behalf of any logged-in user opening
an app the template shares (its certificate never leaves the gateway, which forwards to that app's
port only: docs/adr/0031). Each pairing is a row of workspace_connections, which the relay completes.
A pairing lasts as long as the API key that made it, at most PAIRING_LIFETIME; revoking the key
deletes its relay rows (a trigger), so the relay drops them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.audit.record import RequestInfo, record
from appliance.auth.rbac import Action, Subject, is_allowed
from appliance.db.database import Connection
from appliance.errors import Conflict, Forbidden, Unavailable
from appliance.pki.ssh_ca import SshCaUnavailable, SshUserCa, parse_public_key, ssh_user_ca
from appliance.sdk.agents import ConnectionKind, DerpMap, PairResponse
from appliance.workspaces.agents import Agent, agent_not_found, find_agent, normalised_ssh_key

PAIRING_LIFETIME = timedelta(hours=12)
CONNECT = Action.UPDATE  # Coder's ssh / application_connect: the owner's own, and site owners'
SHARED_APPS = frozenset({"authenticated", "public"})  # appliance_app.share values any logged-in user may open


def user_ca(pki_dir: Path) -> SshUserCa:
    """The SSH user CA a request pairs with: a 503 with the CA's own hint when this process cannot read it."""
    try:
        return ssh_user_ca(pki_dir)
    except SshCaUnavailable as err:
        raise Unavailable(err.message, err.hint) from err


def visible_agent(conn: Connection, subject: Subject, ref: str) -> Agent:
    """An agent whose workspace the subject may read; any other looks missing."""
    agent = find_agent(conn, ref)
    if not is_allowed(subject, Action.READ, agent.resource):
        raise agent_not_found(ref)
    return agent


def _is_shared_app(conn: Connection, agent: Agent, slug: str) -> bool:
    row = conn.execute("SELECT share FROM workspace_apps WHERE agent_id = %s AND slug = %s",
                       (agent.id, slug)).fetchone()
    return row is not None and row["share"] in SHARED_APPS


def _connectable_agent(conn: Connection, subject: Subject, ref: str, shared_app: str | None) -> Agent:
    agent = find_agent(conn, ref)
    if shared_app is not None and _is_shared_app(conn, agent, shared_app):
        pass  # the gateway proxies this shared app's port only, whoever asks
    elif not is_allowed(subject, Action.READ, agent.resource):
        raise agent_not_found(ref)
    elif not is_allowed(subject, CONNECT, agent.resource):
        # A reader (a template admin) knows the workspace exists; hiding it would only confuse them.
        raise Forbidden(f"You may not connect to workspace {agent.target}.",
                        "Only the workspace's owner and site owners may connect to it.")
    if not agent.is_live:
        raise Conflict(f"Agent {agent.name} belongs to a build of {agent.target} that is no longer running.",
                       "Start the workspace, then connect to the agent of its new build (`appliance list`).")
    return agent


def _agent_node_key(conn: Connection, agent: Agent) -> bytes:
    row = conn.execute("SELECT node_key FROM relay_peers WHERE agent_id = %s AND kind = 'agent'"
                       " AND expires_at > now()", (agent.id,)).fetchone()
    if row is None or not agent.ssh_host_key:
        raise Conflict(f"The agent of {agent.target} has not connected yet.",
                       "Wait until the workspace page shows the agent connected; if it stays 'connecting' or "
                       "shows 'timeout', follow the troubleshooting hint there.")
    return bytes(row["node_key"])


def pair(conn: Connection, subject: Subject, info: RequestInfo, ref: str, *, node_key: bytes, ssh_public_key: str,
         ca: SshUserCa, derp: DerpMap, kind: ConnectionKind = "ssh", shared_app: str | None = None) -> PairResponse:
    """Vouch for the client's node key, paired with this agent only, and certify its SSH key for the agent.

    `shared_app`: the slug of the app the gateway pairs for (in-process only, never from the API); when
    the template shares it, any logged-in subject may pair.
    """
    client_line = normalised_ssh_key(ssh_public_key, "ssh_public_key")
    agent = _connectable_agent(conn, subject, ref, shared_app)
    agent_key = _agent_node_key(conn, agent)
    expires_at = _vouch_client(conn, subject, agent, node_key)
    certificate = ca.certify(parse_public_key(client_line), principal=str(agent.id),
                             key_id=f"user={subject.username} agent={agent.id} workspace={agent.target}",
                             now=datetime.now(UTC), valid_before=expires_at)
    record(conn, actor=subject, action="connect", resource_type="workspace", resource_id=agent.workspace_id,
           target=agent.target, info=info,
           diff={"agent": {"old": None, "new": agent.name, "secret": False},
                 "kind": {"old": None, "new": kind, "secret": False},
                 "node_key": {"old": None, "new": node_key.hex(), "secret": False}})
    _log_connection(conn, subject, info, agent, node_key, kind)
    return PairResponse(agent_id=str(agent.id), agent_node_key=agent_key.hex(), agent_ssh_host_key=agent.ssh_host_key,
                        ssh_certificate=certificate, ssh_username=agent.owner_name, derp_map=derp,
                        expires_at=expires_at)


def _vouch_client(conn: Connection, subject: Subject, agent: Agent, node_key: bytes) -> datetime:
    """Insert (or renew) the client's relay row; it expires with the API key, within PAIRING_LIFETIME."""
    row = conn.execute(
        "INSERT INTO relay_peers (node_key, kind, agent_id, workspace_id, user_id, api_key_id, expires_at)"
        " SELECT %(key)s, 'client', %(agent)s, %(workspace)s, %(user)s, k.id, least(k.expires_at, now() + %(life)s)"
        " FROM api_keys k WHERE k.id = %(api_key)s"
        " ON CONFLICT (node_key) DO UPDATE SET expires_at = EXCLUDED.expires_at, api_key_id = EXCLUDED.api_key_id"
        " WHERE relay_peers.kind = 'client' AND relay_peers.agent_id = EXCLUDED.agent_id"
        " AND relay_peers.user_id = EXCLUDED.user_id RETURNING expires_at",
        {"key": node_key, "agent": agent.id, "workspace": agent.workspace_id, "user": subject.user_id,
         "life": PAIRING_LIFETIME, "api_key": subject.api_key_id}).fetchone()
    if row is None:
        raise Conflict("This node key is already registered for another relay peer.",
                       "Generate a new node key for each agent you connect to.", field="node_key")
    expires_at: datetime = row["expires_at"]
    return expires_at



def _log_connection(conn: Connection, subject: Subject, info: RequestInfo, agent: Agent, node_key: bytes,
                    kind: ConnectionKind) -> None:
    """The connection audit's row; the relay stamps when the key connects and leaves (a renewal keeps the row)."""
    conn.execute(
        "INSERT INTO workspace_connections (workspace_id, agent_id, agent_name, user_id, username, kind, client_ip,"
        " user_agent, node_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (node_key) DO NOTHING",
        (agent.workspace_id, agent.id, agent.name, subject.user_id, subject.username, kind, info.ip or None,
         info.user_agent[:512], node_key))
