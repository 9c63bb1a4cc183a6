-- Who may open an app (the template's appliance_app.share), and every session a client opens to an
-- agent through the relay (issue 15; docs/adr/0031).

-- owner: the workspace's owner and site owners; authenticated: any logged-in user; public: as
-- authenticated on this appliance (ADR 0031: no anonymous access in an air-gapped site).
ALTER TABLE workspace_apps
    ADD COLUMN share text NOT NULL DEFAULT 'owner' CHECK (share IN ('owner', 'authenticated', 'public'));

-- One row per pairing (a client's relay key, vouched for one agent). The pairing inserts it; the relay
-- that admits the key stamps connected_at, and ended_at with the bytes it forwarded each way when the
-- connection leaves (counted in memory, written once). A relay that crashed leaves ended_at NULL
-- until it starts again and closes the rows it owned (ended_at = its last heartbeat, bytes unknown).
CREATE TABLE workspace_connections (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id      uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    agent_id          uuid REFERENCES workspace_agents (id) ON DELETE SET NULL,
    agent_name        text NOT NULL DEFAULT '',
    user_id           uuid REFERENCES users (id) ON DELETE SET NULL,
    username          text NOT NULL DEFAULT '',
    kind              text NOT NULL CHECK (kind IN ('ssh', 'terminal', 'port-forward', 'app', 'ping', 'speedtest')),
    client_ip         inet,
    user_agent        text NOT NULL DEFAULT '',
    node_key          bytea NOT NULL UNIQUE CHECK (length(node_key) = 32),
    created_at        timestamptz NOT NULL DEFAULT now(),
    connected_at      timestamptz,
    ended_at          timestamptz,
    relay_name        text,
    -- Bytes of the packets the relay forwarded (SSH ciphertext, so a little above what the session moved).
    bytes_to_agent    bigint CHECK (bytes_to_agent >= 0),
    bytes_from_agent  bigint CHECK (bytes_from_agent >= 0)
);
CREATE INDEX workspace_connections_workspace ON workspace_connections (workspace_id, created_at DESC);
CREATE INDEX workspace_connections_open ON workspace_connections (relay_name) WHERE ended_at IS NULL;
