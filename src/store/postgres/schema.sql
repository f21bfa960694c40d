-- Face Lock's schema on PostgreSQL: the same tables as on SQLite, in PostgreSQL's types.
-- Times are unix milliseconds (BIGINT), as everywhere in Face Lock.

CREATE TABLE users (
    -- Never reused: tokens carry it, so a deleted and re-created user id does not revive the
    -- old user's tokens.
    id          BIGSERIAL PRIMARY KEY,
    -- Byte order, as SQLite sorts: pages of users follow the same order on both stores.
    user_id     TEXT      COLLATE "C" NOT NULL UNIQUE,
    full_name   TEXT,
    email       TEXT,
    created_at  BIGINT    NOT NULL,
    is_admin    BOOLEAN   NOT NULL DEFAULT FALSE
);

CREATE TABLE faces (
    face_id        TEXT    PRIMARY KEY,
    user_rowid     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    engine         TEXT    NOT NULL,
    model          TEXT    NOT NULL,
    reference_path TEXT,
    descriptor     BYTEA,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX faces_by_user ON faces(user_rowid);
CREATE INDEX faces_by_engine ON faces(engine, created_at);

CREATE TABLE reference_photos (
    face_id  TEXT  PRIMARY KEY REFERENCES faces(face_id) ON DELETE CASCADE,
    format   TEXT  NOT NULL,
    photo    BYTEA NOT NULL
);

CREATE TABLE pending_engine_deletions (
    face_id    TEXT   PRIMARY KEY,
    engine     TEXT   NOT NULL,
    queued_at  BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    seq          BIGSERIAL,
    kid          TEXT   PRIMARY KEY,
    alg          TEXT   NOT NULL,
    private_der  BYTEA  NOT NULL,
    public_jwk   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);

CREATE TABLE refresh_tokens (
    token_hash   TEXT   PRIMARY KEY,
    family_id    TEXT   NOT NULL,
    user_rowid   BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    audience     TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX refresh_by_family ON refresh_tokens(family_id);

CREATE TABLE revoked_access_tokens (
    jti         TEXT   PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE lockouts (
    user_id          TEXT   PRIMARY KEY,
    failures         INTEGER NOT NULL,
    last_failure_at  BIGINT NOT NULL,
    locked_until     BIGINT
);

CREATE TABLE address_failures (
    address          TEXT    PRIMARY KEY,
    failures         INTEGER NOT NULL,
    last_failure_at  BIGINT  NOT NULL,
    wait_until       BIGINT  NOT NULL
);

CREATE TABLE audit_events (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    user_id     TEXT,
    actor       TEXT,
    address     TEXT,
    request_id  TEXT,
    detail      TEXT   NOT NULL
);
CREATE INDEX audit_by_time ON audit_events(at);
CREATE INDEX audit_by_user ON audit_events(user_id, at);

-- Requests per client address and minute, counted by every server in the same row.
CREATE TABLE request_counters (
    key           TEXT   NOT NULL,
    window_start  BIGINT NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE TABLE vault (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    data_key  BYTEA   NOT NULL
);

-- Changes other servers must see at once: users, faces and signing keys. Each server names
-- itself in the `facelock.origin` setting of its connections; a trigger logs the change and
-- notifies every listening server, which ignores its own.
CREATE TABLE change_log (
    seq     BIGSERIAL PRIMARY KEY,
    origin  TEXT,
    at      BIGINT NOT NULL
);

-- Every face added or removed, in order, so a server applies another's change to its index
-- instead of reloading every face.
CREATE TABLE face_changes (
    seq      BIGSERIAL PRIMARY KEY,
    face_id  TEXT    NOT NULL,
    engine   TEXT    NOT NULL,
    added    BOOLEAN NOT NULL,
    at       BIGINT  NOT NULL
);

CREATE FUNCTION facelock_face_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO face_changes (face_id, engine, added, at) VALUES
            (NEW.face_id, NEW.engine, TRUE, (extract(epoch from clock_timestamp()) * 1000)::bigint);
    ELSE
        INSERT INTO face_changes (face_id, engine, added, at) VALUES
            (OLD.face_id, OLD.engine, FALSE, (extract(epoch from clock_timestamp()) * 1000)::bigint);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER faces_logged AFTER INSERT OR DELETE ON faces
    FOR EACH ROW EXECUTE FUNCTION facelock_face_changed();

CREATE FUNCTION facelock_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    origin TEXT := current_setting('facelock.origin', true);
BEGIN
    INSERT INTO change_log (origin, at)
        VALUES (origin, (extract(epoch from clock_timestamp()) * 1000)::bigint);
    PERFORM pg_notify('facelock_changes', coalesce(origin, ''));
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION facelock_changed();
CREATE TRIGGER faces_changed AFTER INSERT OR UPDATE OR DELETE ON faces
    FOR EACH STATEMENT EXECUTE FUNCTION facelock_changed();
CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION facelock_changed();
