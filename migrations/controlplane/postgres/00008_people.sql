-- People (adr/0023): passwords and second factors, sign-in throttling,
-- sessions and invitations. Every token and code is stored as its SHA-256;
-- passwords as argon2id; the TOTP secret sealed like a credential.

-- +goose Up
CREATE TABLE user_auth (
    user_id            text COLLATE "C" PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash      text NOT NULL DEFAULT '',
    totp_secret_cipher bytea,
    totp_dek_cipher    bytea,
    totp_key_id        text NOT NULL DEFAULT '',
    totp_confirmed_at  timestamptz,
    -- The last TOTP time step accepted: a code of that step or an earlier one is a replay.
    totp_last_step     bigint NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL
);

CREATE TABLE recovery_codes (
    user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash    text NOT NULL,
    used_at timestamptz,
    PRIMARY KEY (user_id, hash)
);

-- Failed sign-ins per account ("account:<email>") and per address ("address:<ip>").
CREATE TABLE signin_failures (
    key             text PRIMARY KEY,
    failures        integer NOT NULL,
    last_failure_at timestamptz NOT NULL
);

CREATE TABLE sessions (
    id             text COLLATE "C" PRIMARY KEY,
    user_id        text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash           text NOT NULL UNIQUE,
    org_id         text COLLATE "C" REFERENCES organizations (id) ON DELETE SET NULL,
    environment_id text NOT NULL DEFAULT '',
    address        text NOT NULL DEFAULT '',
    user_agent     text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz
);

CREATE INDEX sessions_user ON sessions (user_id, id);

CREATE TABLE invitations (
    id           text COLLATE "C" PRIMARY KEY,
    org_id       text COLLATE "C" NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email        text NOT NULL,
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    environments jsonb,
    hash         text NOT NULL UNIQUE,
    invited_by   text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    mail_sent_at timestamptz,
    accepted_at  timestamptz,
    accepted_by  text NOT NULL DEFAULT '',
    revoked_at   timestamptz
);

CREATE INDEX invitations_org ON invitations (org_id, id);

-- +goose Down
DROP TABLE invitations;
DROP TABLE sessions;
DROP TABLE signin_failures;
DROP TABLE recovery_codes;
DROP TABLE user_auth;
