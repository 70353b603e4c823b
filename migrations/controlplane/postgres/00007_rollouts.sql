-- Fleet rollouts of app migrations (adr/0022): a rollout, leased to the
-- replica that drives it, and its environments with what happened to each.

-- +goose Up
CREATE TABLE rollouts (
    id               text PRIMARY KEY,
    -- NULL for a platform-wide rollout.
    org_id           text REFERENCES organizations (id) ON DELETE CASCADE,
    -- The organization's id, or '*' for the platform: at most one
    -- unfinished rollout per scope.
    scope            text NOT NULL,
    version          bigint NOT NULL CHECK (version > 0),
    waves            jsonb NOT NULL,
    parallelism      integer NOT NULL CHECK (parallelism > 0),
    canary           integer NOT NULL CHECK (canary >= 0),
    on_error         text NOT NULL CHECK (on_error IN ('halt', 'continue')),
    pause_seconds    integer NOT NULL CHECK (pause_seconds >= 0),
    status           text NOT NULL CHECK (status IN ('running', 'paused', 'succeeded', 'failed', 'cancelled')),
    phase            integer NOT NULL DEFAULT 0,
    error            text NOT NULL DEFAULT '',
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    next_at          timestamptz NOT NULL,
    lease_owner      text,
    lease_expires_at timestamptz
);

CREATE UNIQUE INDEX rollouts_one_unfinished_per_scope ON rollouts (scope) WHERE finished_at IS NULL;
CREATE INDEX rollouts_scope ON rollouts (scope, id);

CREATE TABLE rollout_items (
    rollout_id     text NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    environment_id text NOT NULL,
    org_id         text NOT NULL,
    environment    text NOT NULL,
    type           text NOT NULL,
    phase          integer NOT NULL,
    position       integer NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    reason         text NOT NULL DEFAULT '',
    operation_id   text NOT NULL DEFAULT '',
    schema_version bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (rollout_id, environment_id),
    FOREIGN KEY (org_id, environment_id) REFERENCES environments (org_id, id) ON DELETE CASCADE
);

CREATE INDEX rollout_items_position ON rollout_items (rollout_id, position);

-- +goose Down
DROP TABLE rollout_items;
DROP TABLE rollouts;
