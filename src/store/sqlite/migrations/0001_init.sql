-- Users, their faces, and face deletions the engine still owes.
CREATE TABLE users (
    -- Never reused (AUTOINCREMENT): tokens carry it, so a deleted and re-created user id does
    -- not revive the old user's tokens.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT    NOT NULL UNIQUE,
    full_name   TEXT,
    email       TEXT,
    created_at  INTEGER NOT NULL -- unix milliseconds
);

CREATE TABLE faces (
    face_id        TEXT    PRIMARY KEY,
    user_rowid     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    engine         TEXT    NOT NULL,
    reference_path TEXT,
    descriptor     BLOB,
    created_at     INTEGER NOT NULL
);
CREATE INDEX faces_by_user ON faces(user_rowid);

-- Written in the same transaction that deletes a user, cleared once the engine has forgotten
-- the faces: a crash between the two leaves a record to finish the job at the next start.
CREATE TABLE pending_engine_deletions (
    face_id    TEXT    PRIMARY KEY,
    engine     TEXT    NOT NULL,
    queued_at  INTEGER NOT NULL
);
