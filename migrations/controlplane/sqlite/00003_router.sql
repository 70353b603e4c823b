-- The router's tables (adr/0011): the refresh promise on each credential,
-- the change log that keeps every replica's cache coherent, and the
-- receipts of resolutions.

-- +goose Up
-- The latest refresh_after handed out for the credential: a rotation
-- revokes it only after that moment.
ALTER TABLE database_credentials ADD COLUMN promised_until INTEGER;

-- The issuance budget counts a database's credentials issued in the last hour.
CREATE INDEX database_credentials_database_issued ON database_credentials (database_id, issued_at);

-- seq orders the changes. Writers hold the database's one write lock from
-- their first write to commit (every transaction begins IMMEDIATE), so
-- changes commit in seq order; AUTOINCREMENT never hands out a seq again,
-- even after the newest row was deleted. No foreign key: the deletion of an
-- organization is itself a change. A NULL org_id means every organization.
CREATE TABLE changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     TEXT,
    reason     TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX changes_created ON changes (created_at);

-- One row counts the resolutions of one environment's credential by one API
-- key on one replica within one minute (bucket, the minute of first_at).
-- key_id and credential_id have no foreign key: a receipt outlives the key
-- and the credential it names, until retention removes it.
CREATE TABLE router_receipts (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    user_id        TEXT,
    scope          TEXT NOT NULL CHECK (scope IN ('admin', 'readwrite', 'readonly')),
    credential_id  TEXT NOT NULL,
    key_version    TEXT NOT NULL,
    replica        TEXT NOT NULL,
    bucket         INTEGER NOT NULL,
    first_at       INTEGER NOT NULL,
    last_at        INTEGER NOT NULL,
    count          INTEGER NOT NULL CHECK (count > 0),
    UNIQUE (environment_id, key_id, scope, credential_id, key_version, replica, bucket),
    FOREIGN KEY (org_id, environment_id) REFERENCES environments (org_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX router_receipts_environment ON router_receipts (environment_id, id);
CREATE INDEX router_receipts_last ON router_receipts (last_at);

-- +goose Down
DROP TABLE router_receipts;
DROP TABLE changes;
DROP INDEX database_credentials_database_issued;
ALTER TABLE database_credentials DROP COLUMN promised_until;
