-- People (adr/0023): passwords and second factors, sign-in throttling,
-- sessions and invitations. Every token and code is stored as its SHA-256;
-- passwords as argon2id; the TOTP secret sealed like a credential.

-- +goose Up
CREATE TABLE user_auth (
    user_id            TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash      TEXT NOT NULL DEFAULT '',
    totp_secret_cipher BLOB,
    totp_dek_cipher    BLOB,
    totp_key_id        TEXT NOT NULL DEFAULT '',
    totp_confirmed_at  INTEGER,
    -- The last TOTP time step accepted: a code of that step or an earlier one is a replay.
    totp_last_step     INTEGER NOT NULL DEFAULT 0,
    updated_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash    TEXT NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, hash)
) STRICT;

-- Failed sign-ins per account ("account:<email>") and per address ("address:<ip>").
CREATE TABLE signin_failures (
    key             TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash           TEXT NOT NULL UNIQUE,
    org_id         TEXT REFERENCES organizations (id) ON DELETE SET NULL,
    environment_id TEXT NOT NULL DEFAULT '',
    address        TEXT NOT NULL DEFAULT '',
    user_agent     TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER
) STRICT;

CREATE INDEX sessions_user ON sessions (user_id, id);

CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    environments TEXT,
    hash         TEXT NOT NULL UNIQUE,
    invited_by   TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    mail_sent_at INTEGER,
    accepted_at  INTEGER,
    accepted_by  TEXT NOT NULL DEFAULT '',
    revoked_at   INTEGER
) STRICT;

CREATE INDEX invitations_org ON invitations (org_id, id);

-- +goose Down
DROP TABLE invitations;
DROP TABLE sessions;
DROP TABLE signin_failures;
DROP TABLE recovery_codes;
DROP TABLE user_auth;
