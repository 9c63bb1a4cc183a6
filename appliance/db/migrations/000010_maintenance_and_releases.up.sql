-- Maintenance mode and the release history (docs/adr/0037-maintenance-and-release-history.md).

-- One row: whether the appliance refuses writes for an upgrade, restore or rollback, and why.
CREATE TABLE maintenance (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    active      boolean NOT NULL DEFAULT false,
    reason      text,
    since       timestamptz,
    CHECK (active = (since IS NOT NULL))
);
INSERT INTO maintenance DEFAULT VALUES;

-- What a mutating request (and a job claim) calls first, inside a transaction it keeps open until it
-- is done: a shared advisory lock that `appliance maintenance enter` takes exclusively after turning
-- maintenance on, so enter returns only once every writer that saw "off" has finished. VOLATILE: the
-- SELECT takes its snapshot after the lock is granted, so a writer that waited for enter sees "on".
CREATE FUNCTION maintenance_guard() RETURNS TABLE (active boolean, reason text, since timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1296124238);  -- 0x4D41494E, "MAIN"
    RETURN QUERY SELECT m.active, m.reason, m.since FROM maintenance m;
END
$$;

-- Every install, upgrade, rollback, restore and downgrade the installer ran: its receipt.
CREATE TABLE release_history (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind             text NOT NULL CHECK (kind IN ('install', 'upgrade', 'rollback', 'restore', 'downgrade')),
    from_version     text,
    to_version       text NOT NULL,
    manifest_sha256  text,
    signers          jsonb NOT NULL DEFAULT '[]',
    plan             jsonb,
    steps            jsonb NOT NULL DEFAULT '[]',
    outcome          text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'rolled-back')),
    failed_step      text,
    actor            text NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    sbom             jsonb,
    log              text,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    -- The installer may record the same run twice (a resumed journal): the second is a no-op.
    UNIQUE (kind, started_at, to_version)
);
CREATE INDEX release_history_started ON release_history (started_at DESC, id);
