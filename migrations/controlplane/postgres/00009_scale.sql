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
-- A row is locked only by writes of its own organization, which the
-- environment reservation already serializes.
CREATE TABLE org_target_usage (
    org_id      text COLLATE "C" NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    target      text NOT NULL,
    databases   bigint NOT NULL DEFAULT 0,
    usage_bytes bigint NOT NULL DEFAULT 0,
    over_limit  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, target)
);

INSERT INTO org_target_usage (org_id, target, databases, usage_bytes, over_limit)
SELECT e.org_id, d.target, count(*), coalesce(sum(d.usage_bytes), 0), count(*) FILTER (WHERE d.over_limit)
FROM environment_databases d JOIN environments e ON e.id = d.environment_id
WHERE e.deleted_at IS NULL
GROUP BY e.org_id, d.target;

-- org_target_usage_add adds one live database's figures (sign 1) or takes
-- them away (sign -1).
-- +goose StatementBegin
CREATE FUNCTION org_target_usage_add(p_org text, p_target text, p_sign bigint, p_bytes bigint, p_over boolean) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO org_target_usage AS u (org_id, target, databases, usage_bytes, over_limit)
    VALUES (p_org, p_target, p_sign, p_sign * coalesce(p_bytes, 0), CASE WHEN p_over THEN p_sign ELSE 0 END)
    ON CONFLICT (org_id, target) DO UPDATE SET databases = u.databases + excluded.databases,
        usage_bytes = u.usage_bytes + excluded.usage_bytes, over_limit = u.over_limit + excluded.over_limit
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION org_target_usage_db() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    org text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT e.org_id INTO org FROM environments e WHERE e.id = OLD.environment_id AND e.deleted_at IS NULL;
        IF FOUND THEN
            PERFORM org_target_usage_add(org, OLD.target, -1, OLD.usage_bytes, OLD.over_limit);
        END IF;
        RETURN NULL;
    END IF;
    SELECT e.org_id INTO org FROM environments e WHERE e.id = NEW.environment_id AND e.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF coalesce(NEW.usage_bytes, 0) = coalesce(OLD.usage_bytes, 0) AND NEW.over_limit = OLD.over_limit THEN
            RETURN NULL;
        END IF;
        UPDATE org_target_usage SET usage_bytes = usage_bytes + coalesce(NEW.usage_bytes, 0) - coalesce(OLD.usage_bytes, 0),
            over_limit = over_limit + NEW.over_limit::int - OLD.over_limit::int
        WHERE org_id = org AND target = NEW.target;
        RETURN NULL;
    END IF;
    PERFORM org_target_usage_add(org, NEW.target, 1, NEW.usage_bytes, NEW.over_limit);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION org_target_usage_env() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    IF (OLD.deleted_at IS NULL) = (NEW.deleted_at IS NULL) THEN
        RETURN NULL;
    END IF;
    FOR d IN SELECT target, usage_bytes, over_limit FROM environment_databases WHERE environment_id = NEW.id LOOP
        PERFORM org_target_usage_add(NEW.org_id, d.target, CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE -1 END, d.usage_bytes, d.over_limit);
    END LOOP;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER org_target_usage_db AFTER INSERT OR DELETE OR UPDATE OF usage_bytes, over_limit ON environment_databases
    FOR EACH ROW EXECUTE FUNCTION org_target_usage_db();
CREATE TRIGGER org_target_usage_env AFTER UPDATE OF deleted_at ON environments
    FOR EACH ROW EXECUTE FUNCTION org_target_usage_env();

-- The usage pass claims, per target, the databases due by now. Databases
-- of environments that are deleted, being deleted or failed are never
-- measured: they are parked far in the future (and made due again if the
-- environment comes back), so the claim's index range holds only what the
-- pass can measure, whatever the history of deleted environments.
CREATE INDEX environment_databases_target_usage_due ON environment_databases (target, usage_due_at);
DROP INDEX environment_databases_usage_due;
UPDATE environment_databases SET usage_due_at = '9999-12-31 23:59:59.999999+00'
WHERE environment_id IN (SELECT id FROM environments WHERE status NOT IN ('active', 'suspended', 'provisioning'));

-- +goose StatementBegin
CREATE FUNCTION environment_databases_usage_parked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.status IN ('active', 'suspended', 'provisioning')) <> (NEW.status IN ('active', 'suspended', 'provisioning')) THEN
        UPDATE environment_databases SET usage_due_at = CASE WHEN NEW.status IN ('active', 'suspended', 'provisioning')
            THEN 'epoch'::timestamptz ELSE '9999-12-31 23:59:59.999999+00'::timestamptz END
        WHERE environment_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER environment_databases_usage_parked AFTER UPDATE OF status ON environments
    FOR EACH ROW EXECUTE FUNCTION environment_databases_usage_parked();

-- +goose Down
DROP TRIGGER environment_databases_usage_parked ON environments;
DROP FUNCTION environment_databases_usage_parked();
UPDATE environment_databases SET usage_due_at = 'epoch' WHERE usage_due_at = '9999-12-31 23:59:59.999999+00';
CREATE INDEX environment_databases_usage_due ON environment_databases (usage_due_at);
DROP INDEX environment_databases_target_usage_due;
DROP TRIGGER org_target_usage_env ON environments;
DROP TRIGGER org_target_usage_db ON environment_databases;
DROP FUNCTION org_target_usage_env();
DROP FUNCTION org_target_usage_db();
DROP FUNCTION org_target_usage_add(text, text, bigint, bigint, boolean);
DROP TABLE org_target_usage;
DROP INDEX database_credentials_rotating_expires;
DROP INDEX database_credentials_active_expires;
