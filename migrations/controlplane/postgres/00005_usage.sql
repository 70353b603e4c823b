-- Usage and storage limits (adr/0019): each database's last measurement,
-- when the next one is due (the background pass claims what is due through
-- an index, so it costs what is due, not what exists), and whether it is
-- over its storage limit.

-- +goose Up
ALTER TABLE environment_databases
    ADD COLUMN usage_bytes       bigint,
    ADD COLUMN usage_tables      bigint,
    ADD COLUMN usage_connections bigint,
    ADD COLUMN usage_measured_at timestamptz,
    -- The epoch means due now (never measured).
    ADD COLUMN usage_due_at      timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN over_limit        boolean NOT NULL DEFAULT false;

CREATE INDEX environment_databases_usage_due ON environment_databases (usage_due_at);

-- +goose Down
DROP INDEX environment_databases_usage_due;
ALTER TABLE environment_databases
    DROP COLUMN over_limit,
    DROP COLUMN usage_due_at,
    DROP COLUMN usage_measured_at,
    DROP COLUMN usage_connections,
    DROP COLUMN usage_tables,
    DROP COLUMN usage_bytes;
