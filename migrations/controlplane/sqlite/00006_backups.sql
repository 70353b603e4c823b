-- Backups (adr/0021): one row per backup of an environment's database. The
-- bytes live in the backup store under the row's id, sealed under a data
-- key that the keyring wrapped (key_id); sha256 is of the stored bytes.
-- The row outlives its environment's deletion (environments are
-- tombstones); the organization's deletion removes it.

-- +goose Up
CREATE TABLE backups (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    environment_id TEXT NOT NULL,
    database_id    TEXT NOT NULL,
    driver         TEXT NOT NULL,
    format         TEXT NOT NULL DEFAULT '',
    trigger        TEXT NOT NULL CHECK (trigger IN ('manual', 'scheduled', 'pre_restore')),
    status         TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    size_bytes     INTEGER NOT NULL DEFAULT 0,
    sha256         TEXT NOT NULL DEFAULT '',
    key_id         TEXT NOT NULL DEFAULT '',
    schema_version INTEGER NOT NULL DEFAULT 0,
    tables         TEXT,
    operation_id   TEXT NOT NULL DEFAULT '',
    error          TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    completed_at   INTEGER,
    FOREIGN KEY (org_id, environment_id) REFERENCES environments (org_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX backups_environment ON backups (environment_id, id);

-- +goose Down
DROP INDEX backups_environment;
DROP TABLE backups;
