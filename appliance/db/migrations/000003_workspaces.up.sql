-- Templates, workspaces, their builds, and the provisioner job queue that runs terraform for them.

-- Uploaded template sources (tar archives), addressed by their sha256 so a re-push is free.
CREATE TABLE files (
    hash        text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    data        bytea NOT NULL,
    -- NULL: the appliance itself (the starter template pushed at first start).
    created_by  uuid REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE templates (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name               text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$'),
    display_name       text NOT NULL DEFAULT '',
    description        text NOT NULL DEFAULT '',
    -- Site roles whose holders may create workspaces from it ('member' = everyone).
    allowed_roles      text[] NOT NULL DEFAULT '{member}'
                       CHECK (allowed_roles <@ ARRAY['owner', 'template-admin', 'user-admin', 'auditor',
                                                     'member']::text[]),
    active_version_id  uuid,
    created_by         uuid REFERENCES users (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);
CREATE UNIQUE INDEX templates_name_live ON templates (name) WHERE deleted_at IS NULL;

-- A daemon that runs jobs; in-process daemons and external ones alike register here.
CREATE TABLE provisioner_daemons (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    tags          jsonb NOT NULL DEFAULT '{}',
    version       text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE provisioner_jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type             text NOT NULL CHECK (type IN ('template_version_import', 'workspace_build')),
    -- Daemons claim a job only if its tags are contained in theirs.
    tags             jsonb NOT NULL DEFAULT '{"scope": "site"}',
    initiator_id     uuid REFERENCES users (id),
    timeout_seconds  integer NOT NULL CHECK (timeout_seconds > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    heartbeat_at     timestamptz,
    canceled_at      timestamptz,
    completed_at     timestamptz,
    worker_id        uuid REFERENCES provisioner_daemons (id),
    error            text NOT NULL DEFAULT '',
    CHECK (completed_at IS NULL OR started_at IS NOT NULL OR canceled_at IS NOT NULL)
);
CREATE INDEX provisioner_jobs_queue ON provisioner_jobs (created_at) WHERE started_at IS NULL AND canceled_at IS NULL;
CREATE INDEX provisioner_jobs_running ON provisioner_jobs (heartbeat_at) WHERE started_at IS NOT NULL AND completed_at IS NULL;

CREATE TABLE provisioner_job_logs (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    stage       text NOT NULL,
    level       text NOT NULL DEFAULT 'info' CHECK (level IN ('debug', 'info', 'warn', 'error')),
    output      text NOT NULL
);
CREATE INDEX provisioner_job_logs_job ON provisioner_job_logs (job_id, id);

CREATE TABLE template_versions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    template_id  uuid NOT NULL REFERENCES templates (id),
    number       integer NOT NULL CHECK (number > 0),
    message      text NOT NULL DEFAULT '',
    file_hash    text NOT NULL REFERENCES files (hash),
    job_id       uuid NOT NULL UNIQUE REFERENCES provisioner_jobs (id),
    -- Promote to active when the import succeeds.
    activate     boolean NOT NULL DEFAULT true,
    archived     boolean NOT NULL DEFAULT false,
    parameters   jsonb NOT NULL DEFAULT '[]',
    agents       jsonb NOT NULL DEFAULT '[]',
    created_by   uuid REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (template_id, number)
);
ALTER TABLE templates ADD CONSTRAINT templates_active_version
    FOREIGN KEY (active_version_id) REFERENCES template_versions (id);

CREATE TABLE workspaces (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id     uuid NOT NULL REFERENCES users (id),
    template_id  uuid NOT NULL REFERENCES templates (id),
    -- DNS-safe: it becomes part of host names for apps and SSH.
    name         text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE UNIQUE INDEX workspaces_owner_name_live ON workspaces (owner_id, name) WHERE deleted_at IS NULL;
CREATE INDEX workspaces_template_live ON workspaces (template_id) WHERE deleted_at IS NULL;

CREATE TABLE workspace_builds (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id         uuid NOT NULL REFERENCES workspaces (id),
    build_number         integer NOT NULL CHECK (build_number > 0),
    transition           text NOT NULL CHECK (transition IN ('start', 'stop', 'delete')),
    template_version_id  uuid NOT NULL REFERENCES template_versions (id),
    job_id               uuid NOT NULL UNIQUE REFERENCES provisioner_jobs (id),
    initiator_id         uuid REFERENCES users (id),
    reason               text NOT NULL DEFAULT 'initiator',
    parameters           jsonb NOT NULL DEFAULT '{}',
    -- Terraform state after (or, for a job that died, during) this build.
    state                bytea,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, build_number)
);

-- What a build left standing, read from its state when it ends.
CREATE TABLE workspace_resources (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id      uuid NOT NULL REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    address     text NOT NULL,
    type        text NOT NULL,
    name        text NOT NULL,
    daily_cost  integer NOT NULL DEFAULT 0,
    metadata    jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX workspace_resources_job ON workspace_resources (job_id);

CREATE TABLE workspace_agents (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The id the provider gave the agent resource; it survives builds that keep the agent.
    terraform_id      text NOT NULL,
    resource_id       uuid NOT NULL REFERENCES workspace_resources (id) ON DELETE CASCADE,
    name              text NOT NULL,
    os                text NOT NULL,
    arch              text NOT NULL,
    directory         text NOT NULL DEFAULT '',
    startup_script    text NOT NULL DEFAULT '',
    env               jsonb NOT NULL DEFAULT '{}',
    -- The agent presents its token; only sha256(token) is kept.
    hashed_token      bytea NOT NULL CHECK (length(hashed_token) = 32),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workspace_agents_token ON workspace_agents (hashed_token);

CREATE TABLE workspace_apps (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id      uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    slug          text NOT NULL,
    display_name  text NOT NULL DEFAULT '',
    url           text NOT NULL DEFAULT '',
    command       text NOT NULL DEFAULT '',
    healthcheck   jsonb NOT NULL DEFAULT '{}',
    UNIQUE (agent_id, slug)
);
