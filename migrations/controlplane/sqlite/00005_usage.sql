-- Usage and storage limits (adr/0019): each database's last measurement,
-- when the next one is due (the background pass claims what is due through
-- an index, so it costs what is due, not what exists), and whether it is
-- over its storage limit.

-- +goose Up
ALTER TABLE environment_databases ADD COLUMN usage_bytes INTEGER;
ALTER TABLE environment_databases ADD COLUMN usage_tables INTEGER;
ALTER TABLE environment_databases ADD COLUMN usage_connections INTEGER;
ALTER TABLE environment_databases ADD COLUMN usage_measured_at INTEGER;
-- Microseconds since the epoch; 0 means due now (never measured).
ALTER TABLE environment_databases ADD COLUMN usage_due_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE environment_databases ADD COLUMN over_limit INTEGER NOT NULL DEFAULT 0 CHECK (over_limit IN (0, 1));

CREATE INDEX environment_databases_usage_due ON environment_databases (usage_due_at);

-- +goose Down
DROP INDEX environment_databases_usage_due;
ALTER TABLE environment_databases DROP COLUMN over_limit;
ALTER TABLE environment_databases DROP COLUMN usage_due_at;
ALTER TABLE environment_databases DROP COLUMN usage_measured_at;
ALTER TABLE environment_databases DROP COLUMN usage_connections;
ALTER TABLE environment_databases DROP COLUMN usage_tables;
ALTER TABLE environment_databases DROP COLUMN usage_bytes;
