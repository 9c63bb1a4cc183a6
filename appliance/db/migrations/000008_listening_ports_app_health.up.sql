-- What the agent reports from inside the workspace (issue 15, docs/adr/0032): the TCP ports listening
-- there, and the health of the template's apps as the agent's healthchecks see it.

-- The agent's latest report, replaced whole each time the set changes: [{port, network, process_name}].
-- Read only while the agent is connected: a disconnected agent cannot say what still listens.
ALTER TABLE workspace_agents
    ADD COLUMN listening_ports jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN listening_ports_at timestamptz;

-- Coder's app health. An app with a healthcheck starts 'initializing' (set where builds store apps,
-- since a default cannot read the healthcheck column); one without stays 'disabled'.
ALTER TABLE workspace_apps
    ADD COLUMN health text NOT NULL DEFAULT 'disabled'
        CHECK (health IN ('disabled', 'initializing', 'healthy', 'unhealthy'));

UPDATE workspace_apps SET health = 'initializing' WHERE healthcheck ? 'url';
