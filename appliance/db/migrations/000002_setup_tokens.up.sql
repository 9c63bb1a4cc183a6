-- One-time links for creating the first user on an installed appliance, where the setup page
-- is reachable from the network and must not be open to whoever gets there first.
CREATE TABLE setup_tokens (
    id             bigserial PRIMARY KEY,
    hashed_secret  bytea NOT NULL CHECK (length(hashed_secret) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
