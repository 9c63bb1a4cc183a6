-- The health report's dismissals (docs/adr/0043-health-report.md): codes an owner chose to stop counting.
-- A dismissed finding is still reported, marked dismissed; it no longer raises its section's severity.
CREATE TABLE health_dismissals (
    code          text PRIMARY KEY CHECK (code ~ '^E[A-Z]{2,5}[0-9]{2}$'),
    dismissed_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    dismissed_at  timestamptz NOT NULL DEFAULT now()
);
