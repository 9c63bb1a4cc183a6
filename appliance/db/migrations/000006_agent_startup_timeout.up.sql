-- The template's startup_script_timeout (Coder's coder_agent field): seconds the startup script may
-- run before the agent reports start_timeout. The agent reads it from its manifest.
ALTER TABLE workspace_agents
    ADD COLUMN startup_script_timeout_seconds integer NOT NULL DEFAULT 300
        CHECK (startup_script_timeout_seconds >= 0);
