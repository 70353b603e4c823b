-- Scheduled backups read through an index what is due (adr/0021, adr/0024):
-- each environment keeps the time of its newest backup that did not fail
-- (0: never), kept by the triggers below, so a pass walks only the
-- environments of a type whose newest backup is older than the schedule,
-- not every environment of the type.

-- +goose Up
ALTER TABLE environments ADD COLUMN last_backup_at INTEGER NOT NULL DEFAULT 0;

UPDATE environments SET last_backup_at = coalesce(
    (SELECT max(b.created_at) FROM backups b WHERE b.environment_id = environments.id AND b.status <> 'failed'), 0);

CREATE INDEX environments_backup_due ON environments (type, last_backup_at) WHERE status = 'active';

-- +goose StatementBegin
CREATE TRIGGER environments_backup_insert AFTER INSERT ON backups WHEN NEW.status <> 'failed'
BEGIN
    UPDATE environments SET last_backup_at = max(last_backup_at, NEW.created_at) WHERE id = NEW.environment_id;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER environments_backup_update AFTER UPDATE OF status ON backups WHEN NEW.status <> OLD.status
BEGIN
    UPDATE environments SET last_backup_at = coalesce(
        (SELECT max(b.created_at) FROM backups b WHERE b.environment_id = NEW.environment_id AND b.status <> 'failed'), 0)
    WHERE id = NEW.environment_id;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER environments_backup_delete AFTER DELETE ON backups
BEGIN
    UPDATE environments SET last_backup_at = coalesce(
        (SELECT max(b.created_at) FROM backups b WHERE b.environment_id = OLD.environment_id AND b.status <> 'failed'), 0)
    WHERE id = OLD.environment_id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER environments_backup_delete;
DROP TRIGGER environments_backup_update;
DROP TRIGGER environments_backup_insert;
DROP INDEX environments_backup_due;
ALTER TABLE environments DROP COLUMN last_backup_at;
