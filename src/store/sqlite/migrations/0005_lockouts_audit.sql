-- Failed face logins per claimed user id (enrolled or not, so a lockout reveals nothing), shared
-- by every server on the store.
CREATE TABLE lockouts (
    user_id          TEXT    PRIMARY KEY,
    failures         INTEGER NOT NULL,
    last_failure_at  INTEGER NOT NULL, -- unix milliseconds
    locked_until     INTEGER
);

-- What happened, for the operator: logins, refusals, lockouts, enrolments, deletions, admin
-- actions. Never tokens, photos or descriptors.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL, -- unix milliseconds
    kind        TEXT    NOT NULL,
    user_id     TEXT,
    actor       TEXT,
    address     TEXT,
    request_id  TEXT,
    detail      TEXT    NOT NULL -- JSON object
);
CREATE INDEX audit_by_time ON audit_events(at);
CREATE INDEX audit_by_user ON audit_events(user_id, at);
