-- Control plane core: users, API keys (sessions and tokens), login throttling, audit log,
-- and site secrets generated inside the database so every process shares them.

CREATE TABLE site_secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username         text NOT NULL CHECK (username ~ '^[a-zA-Z0-9]([a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?$'),
    email            text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    name             text NOT NULL DEFAULT '',
    hashed_password  text NOT NULL,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    -- Site roles beyond the implicit member role.
    roles            text[] NOT NULL DEFAULT '{}'
                     CHECK (roles <@ ARRAY['owner', 'template-admin', 'user-admin', 'auditor']::text[]),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz,
    -- Users are soft-deleted so audit rows and ownership history keep their meaning.
    deleted_at       timestamptz
);
CREATE UNIQUE INDEX users_username_live ON users (lower(username)) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_email_live ON users (lower(email)) WHERE deleted_at IS NULL;

-- Browser sessions (login_type 'password') and API tokens (login_type 'token') share one shape:
-- the client holds "<id>-<secret>", the database holds only sha256(secret).
CREATE TABLE api_keys (
    id                text PRIMARY KEY CHECK (id ~ '^[a-zA-Z0-9]{10}$'),
    hashed_secret     bytea NOT NULL CHECK (length(hashed_secret) = 32),
    user_id           uuid NOT NULL REFERENCES users (id),
    login_type        text NOT NULL CHECK (login_type IN ('password', 'token')),
    token_name        text CHECK (token_name ~ '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$'),
    scope             text NOT NULL DEFAULT 'all',
    lifetime_seconds  bigint NOT NULL CHECK (lifetime_seconds > 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    last_used_at      timestamptz,
    revoked_at        timestamptz,
    ip_address        inet,
    CHECK ((login_type = 'token') = (token_name IS NOT NULL))
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE UNIQUE INDEX api_keys_token_name_live ON api_keys (user_id, token_name)
    WHERE revoked_at IS NULL AND token_name IS NOT NULL;

-- One row per failed login, keyed by account and by source address; old rows are pruned.
CREATE TABLE login_failures (
    id         bigserial PRIMARY KEY,
    subject    text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_subject_time ON login_failures (subject, failed_at);

CREATE TABLE audit_logs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    time             timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_id          uuid REFERENCES users (id),
    username         text NOT NULL DEFAULT '',
    action           text NOT NULL,
    resource_type    text NOT NULL,
    resource_id      text NOT NULL DEFAULT '',
    resource_target  text NOT NULL DEFAULT '',
    diff             jsonb NOT NULL DEFAULT '{}',
    status_code      integer NOT NULL,
    ip               inet,
    user_agent       text NOT NULL DEFAULT '',
    request_id       text NOT NULL DEFAULT ''
);
CREATE INDEX audit_logs_time ON audit_logs (time DESC, id DESC);
CREATE INDEX audit_logs_user_time ON audit_logs (user_id, time DESC);
CREATE INDEX audit_logs_action_time ON audit_logs (action, time DESC);
CREATE INDEX audit_logs_resource_time ON audit_logs (resource_type, resource_id, time DESC);

-- The audit log is append-only: rows can be added, never edited or removed one by one.
CREATE FUNCTION audit_logs_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_refuse_change();
