-- org_target_usage_db finds its environment by primary key alone and asks
-- whether it is live afterwards. With "AND deleted_at IS NULL" in the
-- lookup, the partial index environments_live_slug also matched it, and a
-- session that first ran the trigger on an empty registry kept a plan that
-- scanned that index, every live environment, for each database insert
-- and usage update until ANALYZE replanned it (adr/0024, 2026-12-03). The
-- primary key is the only index that can answer "id = $1" now.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION org_target_usage_db() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    org text;
    live boolean;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT e.org_id, e.deleted_at IS NULL INTO org, live FROM environments e WHERE e.id = OLD.environment_id;
        IF FOUND AND live THEN
            PERFORM org_target_usage_add(org, OLD.target, -1, OLD.usage_bytes, OLD.over_limit);
        END IF;
        RETURN NULL;
    END IF;
    SELECT e.org_id, e.deleted_at IS NULL INTO org, live FROM environments e WHERE e.id = NEW.environment_id;
    IF NOT FOUND OR NOT live THEN
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

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION org_target_usage_db() RETURNS trigger
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
