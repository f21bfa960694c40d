-- Token issuance: signing keys, refresh tokens, revoked access tokens.

-- ES256 signing keys. The newest key not retired signs; retired keys stay published until
-- every token they signed has expired. Kept in the database so that every server sharing it
-- sees a rotation without a restart.
CREATE TABLE signing_keys (
    kid          TEXT    PRIMARY KEY,
    alg          TEXT    NOT NULL,
    private_der  BLOB    NOT NULL, -- PKCS#8
    public_jwk   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL, -- unix seconds
    retired_at   INTEGER
);

-- Refresh tokens are stored only as SHA-256 hashes. Each one is single-use; using one issues
-- the next of its family. Presenting a used one revokes the whole family (theft detection).
CREATE TABLE refresh_tokens (
    token_hash   TEXT    PRIMARY KEY,
    family_id    TEXT    NOT NULL,
    user_rowid   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    audience     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX refresh_by_family ON refresh_tokens(family_id);

-- Access tokens revoked before their expiry, by jti; rows go once the token would have expired.
CREATE TABLE revoked_access_tokens (
    jti         TEXT    PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
