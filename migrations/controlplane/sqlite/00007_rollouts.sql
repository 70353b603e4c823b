-- Fleet rollouts of app migrations (adr/0022): a rollout, leased to the
-- replica that drives it, and its environments with what happened to each.

-- +goose Up
CREATE TABLE rollouts (
    id               TEXT PRIMARY KEY,
    -- NULL for a platform-wide rollout.
    org_id           TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    -- The organization's id, or '*' for the platform: at most one
    -- unfinished rollout per scope.
    scope            TEXT NOT NULL,
    version          INTEGER NOT NULL CHECK (version > 0),
    waves            TEXT NOT NULL,
    parallelism      INTEGER NOT NULL CHECK (parallelism > 0),
    canary           INTEGER NOT NULL CHECK (canary >= 0),
    on_error         TEXT NOT NULL CHECK (on_error IN ('halt', 'continue')),
    pause_seconds    INTEGER NOT NULL CHECK (pause_seconds >= 0),
    status           TEXT NOT NULL CHECK (status IN ('running', 'paused', 'succeeded', 'failed', 'cancelled')),
    phase            INTEGER NOT NULL DEFAULT 0,
    error            TEXT NOT NULL DEFAULT '',
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    next_at          INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER
) STRICT;

CREATE UNIQUE INDEX rollouts_one_unfinished_per_scope ON rollouts (scope) WHERE finished_at IS NULL;
CREATE INDEX rollouts_scope ON rollouts (scope, id);

CREATE TABLE rollout_items (
    rollout_id     TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    environment_id TEXT NOT NULL,
    org_id         TEXT NOT NULL,
    environment    TEXT NOT NULL,
    type           TEXT NOT NULL,
    phase          INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    reason         TEXT NOT NULL DEFAULT '',
    operation_id   TEXT NOT NULL DEFAULT '',
    schema_version INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, environment_id),
    FOREIGN KEY (org_id, environment_id) REFERENCES environments (org_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX rollout_items_position ON rollout_items (rollout_id, position);

-- +goose Down
DROP TABLE rollout_items;
DROP TABLE rollouts;
