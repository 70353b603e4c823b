-- Scheduled backups read through an index what is due (adr/0021, adr/0024):
-- each environment keeps the time of its newest backup that did not fail
-- (-infinity: never), kept by the trigger below, so a pass walks only the
-- environments of a type whose newest backup is older than the schedule,
-- not every environment of the type.

-- +goose Up
ALTER TABLE environments ADD COLUMN last_backup_at timestamptz NOT NULL DEFAULT '-infinity';

UPDATE environments e SET last_backup_at = coalesce(
    (SELECT max(b.created_at) FROM backups b WHERE b.environment_id = e.id AND b.status <> 'failed'), '-infinity');

CREATE INDEX environments_backup_due ON environments (type, last_backup_at) WHERE status = 'active';

-- +goose StatementBegin
CREATE FUNCTION environments_backup_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    env text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        env := OLD.environment_id;
    ELSE
        env := NEW.environment_id;
    END IF;
    UPDATE environments SET last_backup_at = coalesce(
        (SELECT max(b.created_at) FROM backups b WHERE b.environment_id = env AND b.status <> 'failed'), '-infinity')
    WHERE id = env;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER environments_backup_stamp AFTER INSERT OR DELETE OR UPDATE OF status ON backups
    FOR EACH ROW EXECUTE FUNCTION environments_backup_stamp();

-- +goose Down
DROP TRIGGER environments_backup_stamp ON backups;
DROP FUNCTION environments_backup_stamp();
DROP INDEX environments_backup_due;
ALTER TABLE environments DROP COLUMN last_backup_at;
