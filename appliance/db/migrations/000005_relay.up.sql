-- The relay and the workspace agent (issue 14): what an agent reports, and which relay keys the
-- control plane vouches for (docs/adr/0023).

-- What the agent reports about itself, and what the relay saw of its connection (Coder's fields).
ALTER TABLE workspace_agents
    ADD COLUMN lifecycle_state text NOT NULL DEFAULT 'created' CHECK (lifecycle_state IN
        ('created', 'starting', 'start_timeout', 'start_error', 'ready', 'shutting_down', 'off')),
    ADD COLUMN lifecycle_changed_at timestamptz,
    ADD COLUMN started_at timestamptz,
    ADD COLUMN ready_at timestamptz,
    -- Seconds after creation without a first connection before the agent shows "timeout" (the template's).
    ADD COLUMN connection_timeout_seconds integer NOT NULL DEFAULT 120 CHECK (connection_timeout_seconds >= 0),
    ADD COLUMN troubleshooting_url text NOT NULL DEFAULT '',
    -- Written by the relay: the agent's relay connection, as Coder's coordinator records it.
    ADD COLUMN first_connected_at timestamptz,
    ADD COLUMN last_connected_at timestamptz,
    ADD COLUMN disconnected_at timestamptz,
    -- The agent's SSH host key (OpenSSH public key line), reported at registration; clients pin it.
    ADD COLUMN ssh_host_key text NOT NULL DEFAULT '',
    ADD COLUMN version text NOT NULL DEFAULT '',
    -- The template's metadata blocks: [{key, display_name, script, interval, timeout}].
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '[]';

-- The startup script's output, streamed by the agent as it runs (Coder's workspace_agent_logs).
CREATE TABLE workspace_agent_logs (
    id          bigserial PRIMARY KEY,
    agent_id    uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    source      text NOT NULL DEFAULT 'startup_script',
    level       text NOT NULL DEFAULT 'info' CHECK (level IN ('debug', 'info', 'warn', 'error')),
    output      text NOT NULL
);
CREATE INDEX workspace_agent_logs_agent ON workspace_agent_logs (agent_id, id);

-- The latest result of each metadata block, as the agent last collected it.
CREATE TABLE workspace_agent_metadata (
    agent_id      uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    key           text NOT NULL,
    value         text NOT NULL DEFAULT '',
    error         text NOT NULL DEFAULT '',
    collected_at  timestamptz NOT NULL,
    PRIMARY KEY (agent_id, key)
);

-- Relay admission: the Curve25519 node keys the control plane vouches for. An agent key is registered
-- with the agent's live token; a client key by a user allowed to reach that agent, through one API key.
-- The relay keeps this table in memory and follows it through NOTIFY relay_peers, so admission and
-- pairing are local lookups. Pairing: a client key is forwarded to and from its agent's key only.
CREATE TABLE relay_peers (
    node_key      bytea PRIMARY KEY CHECK (length(node_key) = 32),
    kind          text NOT NULL CHECK (kind IN ('agent', 'client')),
    agent_id      uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       uuid REFERENCES users (id) ON DELETE CASCADE,
    api_key_id    text REFERENCES api_keys (id) ON DELETE CASCADE,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'client') = (api_key_id IS NOT NULL))
);
-- One relay key per agent: a re-registering agent replaces its old key.
CREATE UNIQUE INDEX relay_peers_one_per_agent ON relay_peers (agent_id) WHERE kind = 'agent';
CREATE INDEX relay_peers_workspace ON relay_peers (workspace_id);
CREATE INDEX relay_peers_api_key ON relay_peers (api_key_id);

-- Every change reaches the relay: payload {"op": "INSERT"|"DELETE"|"UPDATE", "node_key": hex, "kind", "agent_id"}.
CREATE FUNCTION relay_peers_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed relay_peers;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM pg_notify('relay_peers', json_build_object(
        'op', TG_OP, 'node_key', encode(changed.node_key, 'hex'), 'kind', changed.kind,
        'agent_id', changed.agent_id, 'expires_at', changed.expires_at)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER relay_peers_changed AFTER INSERT OR UPDATE OR DELETE ON relay_peers
    FOR EACH ROW EXECUTE FUNCTION relay_peers_notify();

-- Revoking an API key (a token revoked, a logout, a password change) forgets the client keys it
-- registered, so the relay closes their connections at once; no code path can forget to.
CREATE FUNCTION api_keys_revoke_relay_peers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM relay_peers WHERE api_key_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER api_keys_revoked AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION api_keys_revoke_relay_peers();

-- A stop or delete build forgets every relay key of the workspace when it is queued: its sessions
-- close within a second, before terraform has even started removing the container.
CREATE FUNCTION workspace_builds_revoke_relay_peers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM relay_peers WHERE workspace_id = NEW.workspace_id;
    RETURN NULL;
END $$;
CREATE TRIGGER workspace_builds_stop_relay AFTER INSERT ON workspace_builds
    FOR EACH ROW WHEN (NEW.transition IN ('stop', 'delete'))
    EXECUTE FUNCTION workspace_builds_revoke_relay_peers();

-- Live counters the relay writes every few seconds, for the console's relay page (one row per relay).
CREATE TABLE relay_stats (
    relay_name    text PRIMARY KEY,
    region_id     integer NOT NULL,
    started_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    counters      jsonb NOT NULL DEFAULT '{}'
);
