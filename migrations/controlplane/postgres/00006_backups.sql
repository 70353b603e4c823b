-- Backups (adr/0021): one row per backup of an environment's database. The
-- bytes live in the backup store under the row's id, sealed under a data
-- key that the keyring wrapped (key_id); sha256 is of the stored bytes.
-- The row outlives its environment's deletion (environments are
-- tombstones); the organization's deletion removes it.

-- +goose Up
CREATE TABLE backups (
    id             text PRIMARY KEY,
    org_id         text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    environment_id text NOT NULL,
    database_id    text NOT NULL,
    driver         text NOT NULL,
    format         text NOT NULL DEFAULT '',
    trigger        text NOT NULL CHECK (trigger IN ('manual', 'scheduled', 'pre_restore')),
    status         text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    size_bytes     bigint NOT NULL DEFAULT 0,
    sha256         text NOT NULL DEFAULT '',
    key_id         text NOT NULL DEFAULT '',
    schema_version bigint NOT NULL DEFAULT 0,
    tables         jsonb,
    operation_id   text NOT NULL DEFAULT '',
    error          text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    completed_at   timestamptz,
    FOREIGN KEY (org_id, environment_id) REFERENCES environments (org_id, id) ON DELETE CASCADE
);

CREATE INDEX backups_environment ON backups (environment_id, id);

-- +goose Down
DROP INDEX backups_environment;
DROP TABLE backups;
