-- Scale (adr/0024): every background pass reads through an index what is
-- due, and the per-organization and per-target sums are kept as they change
-- instead of recomputed from every environment.

-- +goose Up
-- Scheduled rotation and revocation list the active (resp. rotating)
-- credentials that expire soonest. The plain expires_at index also holds
-- every revoked credential's past grace end, which a range "expires_at <=
-- now" walks through: these hold only the credentials each pass can list.
CREATE INDEX database_credentials_active_expires ON database_credentials (expires_at, id) WHERE status = 'active';
CREATE INDEX database_credentials_rotating_expires ON database_credentials (expires_at, id) WHERE status = 'rotating';

-- Live databases, usage and over-limit flags per organization and target,
-- kept by the triggers below; metrics sum it per organization and
-- placement per target, in as many rows as organizations, not environments.
CREATE TABLE org_target_usage (
    org_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    target      TEXT NOT NULL,
    databases   INTEGER NOT NULL DEFAULT 0,
    usage_bytes INTEGER NOT NULL DEFAULT 0,
    over_limit  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, target)
) STRICT, WITHOUT ROWID;

INSERT INTO org_target_usage (org_id, target, databases, usage_bytes, over_limit)
SELECT e.org_id, d.target, count(*), coalesce(sum(d.usage_bytes), 0), coalesce(sum(d.over_limit), 0)
FROM environment_databases d JOIN environments e ON e.id = d.environment_id
WHERE e.deleted_at IS NULL
GROUP BY e.org_id, d.target;

-- +goose StatementBegin
CREATE TRIGGER org_target_usage_db_insert AFTER INSERT ON environment_databases
BEGIN
    INSERT INTO org_target_usage (org_id, target, databases, usage_bytes, over_limit)
    SELECT e.org_id, NEW.target, 1, coalesce(NEW.usage_bytes, 0), NEW.over_limit
    FROM environments e WHERE e.id = NEW.environment_id AND e.deleted_at IS NULL
    ON CONFLICT (org_id, target) DO UPDATE SET databases = databases + 1,
        usage_bytes = usage_bytes + excluded.usage_bytes, over_limit = over_limit + excluded.over_limit;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER org_target_usage_db_update AFTER UPDATE OF usage_bytes, over_limit ON environment_databases
WHEN coalesce(NEW.usage_bytes, 0) <> coalesce(OLD.usage_bytes, 0) OR NEW.over_limit <> OLD.over_limit
BEGIN
    UPDATE org_target_usage SET usage_bytes = usage_bytes + coalesce(NEW.usage_bytes, 0) - coalesce(OLD.usage_bytes, 0),
        over_limit = over_limit + NEW.over_limit - OLD.over_limit
    WHERE target = NEW.target
        AND org_id = (SELECT org_id FROM environments WHERE id = NEW.environment_id AND deleted_at IS NULL);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER org_target_usage_db_delete AFTER DELETE ON environment_databases
BEGIN
    UPDATE org_target_usage SET databases = databases - 1, usage_bytes = usage_bytes - coalesce(OLD.usage_bytes, 0),
        over_limit = over_limit - OLD.over_limit
    WHERE target = OLD.target
        AND org_id = (SELECT org_id FROM environments WHERE id = OLD.environment_id AND deleted_at IS NULL);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER org_target_usage_env_deleted AFTER UPDATE OF deleted_at ON environments
WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL
BEGIN
    UPDATE org_target_usage SET databases = databases - 1,
        usage_bytes = usage_bytes - (SELECT coalesce(d.usage_bytes, 0) FROM environment_databases d WHERE d.environment_id = NEW.id),
        over_limit = over_limit - (SELECT d.over_limit FROM environment_databases d WHERE d.environment_id = NEW.id)
    WHERE org_id = NEW.org_id
        AND target = (SELECT d.target FROM environment_databases d WHERE d.environment_id = NEW.id);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER org_target_usage_env_undeleted AFTER UPDATE OF deleted_at ON environments
WHEN OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL
BEGIN
    INSERT INTO org_target_usage (org_id, target, databases, usage_bytes, over_limit)
    SELECT NEW.org_id, d.target, 1, coalesce(d.usage_bytes, 0), d.over_limit
    FROM environment_databases d WHERE d.environment_id = NEW.id
    ON CONFLICT (org_id, target) DO UPDATE SET databases = databases + 1,
        usage_bytes = usage_bytes + excluded.usage_bytes, over_limit = over_limit + excluded.over_limit;
END;
-- +goose StatementEnd

-- The usage pass claims, per target, the databases due by now. Databases
-- of environments that are deleted, being deleted or failed are never
-- measured: they are parked far in the future (and made due again if the
-- environment comes back), so the claim's index range holds only what the
-- pass can measure, whatever the history of deleted environments.
CREATE INDEX environment_databases_target_usage_due ON environment_databases (target, usage_due_at);
DROP INDEX environment_databases_usage_due;
UPDATE environment_databases SET usage_due_at = 253402300799999999
WHERE environment_id IN (SELECT id FROM environments WHERE status NOT IN ('active', 'suspended', 'provisioning'));

-- +goose StatementBegin
CREATE TRIGGER environment_databases_usage_parked AFTER UPDATE OF status ON environments
WHEN (OLD.status IN ('active', 'suspended', 'provisioning')) <> (NEW.status IN ('active', 'suspended', 'provisioning'))
BEGIN
    UPDATE environment_databases SET usage_due_at = CASE WHEN NEW.status IN ('active', 'suspended', 'provisioning')
        THEN 0 ELSE 253402300799999999 END
    WHERE environment_id = NEW.id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER environment_databases_usage_parked;
UPDATE environment_databases SET usage_due_at = 0 WHERE usage_due_at = 253402300799999999;
CREATE INDEX environment_databases_usage_due ON environment_databases (usage_due_at);
DROP INDEX environment_databases_target_usage_due;
DROP TRIGGER org_target_usage_env_undeleted;
DROP TRIGGER org_target_usage_env_deleted;
DROP TRIGGER org_target_usage_db_delete;
DROP TRIGGER org_target_usage_db_update;
DROP TRIGGER org_target_usage_db_insert;
DROP TABLE org_target_usage;
DROP INDEX database_credentials_rotating_expires;
DROP INDEX database_credentials_active_expires;
