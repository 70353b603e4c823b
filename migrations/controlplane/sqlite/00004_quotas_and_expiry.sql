-- Quotas and expiry (adr/0018): the platform admin's storage quota of an
-- organization, and when an environment expires.

-- +goose Up
-- max_storage_mb is the organization's storage quota in megabytes; 0 is none.
ALTER TABLE organizations ADD COLUMN max_storage_mb INTEGER NOT NULL DEFAULT 0;

-- expires_at is when the background pass deprovisions the environment;
-- expiry_noticed_at is when it wrote the environment's one `expiring` event
-- for that expiry (cleared when the expiry changes).
ALTER TABLE environments ADD COLUMN expires_at INTEGER;
ALTER TABLE environments ADD COLUMN expiry_noticed_at INTEGER;

-- The pass reads what is due, not what exists.
CREATE INDEX environments_live_expiry ON environments (expires_at) WHERE expires_at IS NOT NULL AND deleted_at IS NULL;

-- +goose Down
DROP INDEX environments_live_expiry;
ALTER TABLE environments DROP COLUMN expiry_noticed_at;
ALTER TABLE environments DROP COLUMN expires_at;
ALTER TABLE organizations DROP COLUMN max_storage_mb;
