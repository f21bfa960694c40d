-- OpenID Connect grants: the request held from /authorize, then the code that answered it
-- (only its hash), redeemed at most once. `request` and `login` are JSON.
CREATE TABLE oidc_grants (
    id           TEXT    PRIMARY KEY,
    client_id    TEXT    NOT NULL,
    request      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    code_hash    TEXT    UNIQUE,
    login        TEXT,
    redeemed_at  INTEGER
);
CREATE INDEX oidc_grants_by_expiry ON oidc_grants(expires_at);
-- The scopes an OpenID Connect session was granted, kept by its refresh tokens.
ALTER TABLE refresh_tokens ADD COLUMN scope TEXT;
