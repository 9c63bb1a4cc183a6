-- The workspace owner's SSH key (Coder's gitsshkeys): one ed25519 key pair per user, made on first use.
-- Templates read the public half as data.appliance_workspace_owner.ssh_public_key (to add to a Git
-- server); the private half is kept for the agent's Git use and never leaves through the API.
CREATE TABLE user_ssh_keys (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    private_key  text NOT NULL,
    public_key   text NOT NULL CHECK (public_key LIKE 'ssh-ed25519 %')
);
