-- A backup's data key, wrapped under key_id, kept in its row (adr/0031),
-- so a keyring rewrap moves it like a credential's without rewriting the
-- stored backup, whose header keeps the key it was sealed with. NULL for
-- a backup made before this column: its key is read from its header.
-- Rewraps read the completed backups not under the current key version.

-- +goose Up
ALTER TABLE backups ADD COLUMN dek_cipher bytea;
CREATE INDEX backups_key ON backups (key_id, id) WHERE status = 'completed';

-- +goose Down
DROP INDEX backups_key;
ALTER TABLE backups DROP COLUMN dek_cipher;
