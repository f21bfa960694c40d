-- OpenID Connect clients. Redirect URIs are JSON arrays of strings.
CREATE TABLE oidc_clients (
    client_id                  TEXT    PRIMARY KEY,
    name                       TEXT    NOT NULL,
    redirect_uris              TEXT    NOT NULL,
    post_logout_redirect_uris  TEXT    NOT NULL,
    secret_hash                TEXT,
    created_at                 INTEGER NOT NULL
);
