-- Liveness challenges, answered at most once (used_at is set by the answer).
CREATE TABLE liveness_challenges (
    id          TEXT    PRIMARY KEY,
    actions     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT
);
CREATE INDEX liveness_challenges_by_expiry ON liveness_challenges(expires_at);
