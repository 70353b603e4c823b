-- The router's tables (adr/0011): the refresh promise on each credential,
-- the change log that keeps every replica's cache coherent, and the
-- receipts of resolutions.

-- +goose Up
-- The latest refresh_after handed out for the credential: a rotation
-- revokes it only after that moment.
ALTER TABLE database_credentials ADD COLUMN promised_until timestamptz;

-- The issuance budget counts a database's credentials issued in the last hour.
CREATE INDEX database_credentials_database_issued ON database_credentials (database_id, issued_at);

-- The one row that hands out change seqs. An appender takes the next value
-- with UPDATE ... RETURNING in its own transaction, and the row stays locked
-- until that transaction ends: appenders take turns, so changes become
-- visible in seq order and a reader that saw seq n never misses a smaller
-- one committed later (a sequence would hand out numbers that commit out of
-- order). A rolled-back appender gives its number back.
CREATE TABLE change_counter (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    value bigint NOT NULL
);

INSERT INTO change_counter (id, value) VALUES (true, 0);

-- No foreign key: the deletion of an organization is itself a change. A
-- NULL org_id means every organization.
CREATE TABLE changes (
    seq        bigint PRIMARY KEY,
    org_id     text COLLATE "C",
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);

CREATE INDEX changes_created ON changes (created_at);

-- One row counts the resolutions of one environment's credential by one API
-- key on one replica within one minute (bucket, the minute of first_at).
-- key_id and credential_id have no foreign key: a receipt outlives the key
-- and the credential it names, until retention removes it.
CREATE TABLE router_receipts (
    id             text COLLATE "C" PRIMARY KEY,
    org_id         text COLLATE "C" NOT NULL,
    environment_id text COLLATE "C" NOT NULL,
    key_id         text COLLATE "C" NOT NULL,
    user_id        text COLLATE "C",
    scope          text NOT NULL CHECK (scope IN ('admin', 'readwrite', 'readonly')),
    credential_id  text COLLATE "C" NOT NULL,
    key_version    text NOT NULL,
    replica        text NOT NULL,
    bucket         timestamptz NOT NULL,
    first_at       timestamptz NOT NULL,
    last_at        timestamptz NOT NULL,
    count          bigint NOT NULL CHECK (count > 0),
    UNIQUE (environment_id, key_id, scope, credential_id, key_version, replica, bucket),
    FOREIGN KEY (org_id, environment_id) REFERENCES environments (org_id, id) ON DELETE CASCADE
);

CREATE INDEX router_receipts_environment ON router_receipts (environment_id, id);
CREATE INDEX router_receipts_last ON router_receipts (last_at);

-- +goose Down
DROP TABLE router_receipts;
DROP TABLE changes;
DROP TABLE change_counter;
DROP INDEX database_credentials_database_issued;
ALTER TABLE database_credentials DROP COLUMN promised_until;
